/* dqt-hw firmware runtime (see dqt.h and docs/firmware.md). */
#include "dqt.h"

#define FIELD(value, name) (((value) & name##_MASK) >> name##_SHIFT)

/* Program header words (docs/accelerator.md, "Program format"). */
#define PROGRAM_MAGIC_WORD 0u
#define PROGRAM_VERSION_WORD 1u
#define PROGRAM_CHECKSUM_WORD 2u

static void write_words(const dqt_device *dev, uint32_t window, const uint32_t *words,
                        uint32_t count) {
    volatile uint32_t *target = (volatile uint32_t *)(dev->base + window);
    for (uint32_t i = 0; i < count; i++)
        target[i] = words[i];
}

/* The sticky bus flags of `status` as a status code (and clear them), or DQT_OK. */
static int take_sticky(const dqt_device *dev, uint32_t status) {
    int code = DQT_OK;
    if (status & DQT_STATUS_BUS_ERROR_MASK)
        code = DQT_ERR_BUS;
    else if (status & DQT_STATUS_START_IGNORED_MASK)
        code = DQT_ERR_START_IGNORED;
    if (code != DQT_OK)
        dqt_write(dev, DQT_REG_CONTROL, DQT_CONTROL_CLEAR_MASK);
    return code;
}

int dqt_init(dqt_device *dev, uintptr_t base) {
    if (dev == 0)
        return DQT_ERR_ARGUMENT;
    dev->base = base;
    dev->model = 0;
    dev->timeout_cycles = DQT_DEFAULT_TIMEOUT_CYCLES;
    if (dqt_read(dev, DQT_REG_ID) != DQT_ID)
        return DQT_ERR_NO_DEVICE;
    dev->version = dqt_read(dev, DQT_REG_VERSION);
    if (FIELD(dev->version, DQT_VERSION_HARDWARE) != DQT_HARDWARE_VERSION ||
        FIELD(dev->version, DQT_VERSION_REGMAP) != DQT_REGMAP_VERSION)
        return DQT_ERR_HW_VERSION;
    dev->config = dqt_read(dev, DQT_REG_CONFIG);
    dev->max_terms = dqt_read(dev, DQT_REG_MAX_TERMS);
    dev->data_words = dqt_read(dev, DQT_REG_DATA_WORDS);
    dqt_write(dev, DQT_REG_CONTROL, DQT_CONTROL_SOFT_RESET_MASK | DQT_CONTROL_CLEAR_MASK);
    dev->last_status = dqt_read(dev, DQT_REG_STATUS);
    return DQT_OK;
}

static int check_model(const dqt_device *dev, const dqt_model *model) {
    if (model->format_version != DQT_MODEL_FORMAT_VERSION)
        return DQT_ERR_MODEL_VERSION;
    if (model->program_words < DQT_PROGRAM_HEADER_WORDS ||
        (model->program[PROGRAM_VERSION_WORD] & 0xFFFFu) !=
            FIELD(dev->version, DQT_VERSION_PROGRAM))
        return DQT_ERR_MODEL_VERSION;
    if (FIELD(dev->config, DQT_CONFIG_COLS) != model->cols ||
        FIELD(dev->config, DQT_CONFIG_BITS_MASK) != model->bits_mask ||
        dev->max_terms != model->max_terms || dev->data_words != model->data_words)
        return DQT_ERR_CONFIG;
    if (model->classes == 0 || model->classes > DQT_MAX_CLASSES ||
        model->slot_count > DQT_MAX_SLOTS || model->op_count > DQT_REG_OP_CYCLES_COUNT ||
        model->data_words_loaded > model->data_words)
        return DQT_ERR_MODEL_SIZE;
    return DQT_OK;
}

int dqt_load_model(dqt_device *dev, const dqt_model *model, int how) {
    if (dev == 0 || model == 0 || (how != DQT_LOAD_WINDOWS && how != DQT_LOAD_PRESENT))
        return DQT_ERR_ARGUMENT;
    dev->model = 0;
    int status = check_model(dev, model);
    if (status != DQT_OK)
        return status;
    dqt_write(dev, DQT_REG_CONTROL, DQT_CONTROL_SOFT_RESET_MASK | DQT_CONTROL_CLEAR_MASK);
    if (how == DQT_LOAD_WINDOWS) {
        write_words(dev, DQT_WIN_PROGRAM, model->program, model->program_words);
        write_words(dev, DQT_WIN_DATA, model->data, 2u * model->data_words_loaded);
        write_words(dev, DQT_WIN_TABLE, model->table, model->table_words);
    } else {
        for (uint32_t i = 0; i < DQT_PROGRAM_HEADER_WORDS - 1u; i++)
            if (dqt_read(dev, DQT_WIN_PROGRAM + 4u * i) != model->program[i])
                return DQT_ERR_MODEL_MISMATCH;
    }
    /* A window smaller than the model (another build of the hardware) flags a bus error. */
    dev->last_status = dqt_read(dev, DQT_REG_STATUS);
    status = take_sticky(dev, dev->last_status);
    if (status != DQT_OK)
        return status;
    dev->model = model;
    return DQT_OK;
}

/* Write the image's stored elements to the IMAGE window: element e = p * Cp + c of pixel p,
 * channel c goes to byte e % 4 of bus word e / 4. Only words that hold a real channel are
 * written; the padding lanes of the layout may hold anything (docs/accelerator.md). */
static void write_image(const dqt_device *dev, const uint8_t *codes) {
    const dqt_model *model = dev->model;
    const uint32_t pixels = model->input_height * model->input_width;
    /* The window maps the whole data memory: the tensor at data word B starts at word 2 B. */
    volatile uint32_t *window = (volatile uint32_t *)(dev->base + DQT_WIN_IMAGE)
                                + 2u * model->input_base;
    uint32_t word = 0, value = 0, element = 0;
    int pending = 0;
    if (model->input_channels == 1u && model->input_cp == 1u) {
        /* One channel, no padding: the stored elements are the codes themselves. */
        uint32_t p = 0;
        if (((uintptr_t)codes & 3u) == 0) {
            /* Four codes per load and store, four stores per loop turn: on a small CPU the
             * loop's own instructions cost as much as the bus writes. */
            const uint32_t *source = (const uint32_t *)(const void *)codes;
            const uint32_t words = pixels >> 2;
            uint32_t w = 0;
            for (; w + 4u <= words; w += 4u) {
                window[w] = source[w];
                window[w + 1u] = source[w + 1u];
                window[w + 2u] = source[w + 2u];
                window[w + 3u] = source[w + 3u];
            }
            for (; w < words; w++)
                window[w] = source[w];
            p = words << 2;
        }
        for (; p < pixels; p++) {
            value |= (uint32_t)codes[p] << (8u * (p & 3u));
            if ((p & 3u) == 3u || p + 1u == pixels) {
                window[p >> 2] = value;
                value = 0;
            }
        }
        return;
    }
    if (model->input_channels == 1u && (model->input_cp & 3u) == 0) {
        /* One channel in a wider pixel: one bus word per pixel, code in byte 0. */
        const uint32_t step = model->input_cp >> 2;
        for (uint32_t p = 0; p < pixels; p++, word += step)
            window[word] = codes[p];
        return;
    }
    for (uint32_t p = 0; p < pixels; p++, element += model->input_cp) {
        const uint8_t *code = codes + p;
        for (uint32_t c = 0; c < model->input_channels; c++, code += pixels) {
            uint32_t e = element + c;
            if (pending && e >> 2 != word) {
                window[word] = value;
                value = 0;
            }
            word = e >> 2;
            value |= (uint32_t)*code << (8u * (e & 3u));
            pending = 1;
        }
    }
    if (pending)
        window[word] = value;
}

/* START, then poll STATUS until DONE (or the timeout). */
static int run(dqt_device *dev) {
    uint32_t status, polls = 0;
    dqt_write(dev, DQT_REG_CONTROL, DQT_CONTROL_START_MASK);
    for (;;) {
        status = dqt_read(dev, DQT_REG_STATUS);
        if ((status & DQT_STATUS_DONE_MASK) && !(status & DQT_STATUS_BUSY_MASK))
            break;
        /* Each poll takes more than one cycle, so `polls` bounds the time too, also when
         * the cycle counter does not move (a run that never started). */
        if (++polls > dev->timeout_cycles ||
            ((status & DQT_STATUS_BUSY_MASK) &&
             dqt_read(dev, DQT_REG_CYCLES) > dev->timeout_cycles)) {
            dqt_write(dev, DQT_REG_CONTROL, DQT_CONTROL_SOFT_RESET_MASK);
            dev->last_status = status;
            return DQT_ERR_TIMEOUT;
        }
        if (!(status & (DQT_STATUS_BUSY_MASK | DQT_STATUS_DONE_MASK))) {
            dev->last_status = status;
            status = take_sticky(dev, status);
            return status != DQT_OK ? status : DQT_ERR_NOT_STARTED;
        }
    }
    dev->last_status = status;
    int sticky = take_sticky(dev, status);
    if (sticky != DQT_OK)
        return sticky;
    if (status & DQT_STATUS_ERROR_MASK) {
        uint32_t code = FIELD(status, DQT_STATUS_ERROR_CODE);
        return code >= DQT_ERROR_BAD_HEADER && code <= DQT_ERROR_BAD_INSTRUCTION
                   ? (int)(DQT_ERR_HW_BASE + code) : DQT_ERR_HW_UNKNOWN;
    }
    return DQT_OK;
}

int dqt_infer(dqt_device *dev, const uint8_t *codes, dqt_result *result) {
    if (dev == 0 || codes == 0 || result == 0)
        return DQT_ERR_ARGUMENT;
    const dqt_model *model = dev->model;
    if (model == 0)
        return DQT_ERR_NO_MODEL;
    /* Sticky flags from before this inference are not its errors. */
    dqt_write(dev, DQT_REG_CONTROL, DQT_CONTROL_CLEAR_MASK);
    write_image(dev, codes);
    int status = run(dev);
    if (status != DQT_OK)
        return status;
    volatile const uint32_t *wide =
        (volatile const uint32_t *)(dev->base + DQT_WIN_WIDE) + model->logits_base;
    uint32_t best = 0;
    for (uint32_t i = 0; i < model->classes; i++) {
        result->logits[i] = (int32_t)wide[i];
        if (result->logits[i] > result->logits[best])
            best = i;
    }
    result->classes = model->classes;
    result->prediction = best;
    for (uint32_t i = 0; i < model->slot_count; i++)
        result->bits[i] = (uint8_t)FIELD(dqt_read(dev, DQT_REG_BITS + 4u * model->slots[i]),
                                         DQT_BITS_WIDTH);
    result->slot_count = model->slot_count;
    result->cycles = dqt_read(dev, DQT_REG_CYCLES);
    return DQT_OK;
}

uint32_t dqt_op_cycles(const dqt_device *dev, uint32_t op) {
    if (dev == 0 || op >= DQT_REG_OP_CYCLES_COUNT)
        return 0;
    /* OP_CYCLES holds each op's end on the run's clock. */
    uint32_t end = dqt_read(dev, DQT_REG_OP_CYCLES + 4u * op);
    return op == 0 ? end : end - dqt_read(dev, DQT_REG_OP_CYCLES + 4u * (op - 1u));
}

const char *dqt_strerror(int status) {
    switch (status) {
    case DQT_OK: return "ok";
    case DQT_ERR_ARGUMENT: return "bad argument";
    case DQT_ERR_NO_DEVICE: return "no dqt-hw accelerator at this address";
    case DQT_ERR_HW_VERSION: return "hardware or register map version differs";
    case DQT_ERR_MODEL_VERSION: return "model or program format version differs";
    case DQT_ERR_CONFIG: return "model compiled for another accelerator configuration";
    case DQT_ERR_MODEL_SIZE: return "model too large for the hardware or dqt_result";
    case DQT_ERR_NO_MODEL: return "no model loaded";
    case DQT_ERR_MODEL_MISMATCH: return "the accelerator holds another program";
    case DQT_ERR_BUS: return "bus error (window access while busy, or undefined address)";
    case DQT_ERR_START_IGNORED: return "START ignored: a run was in progress";
    case DQT_ERR_NOT_STARTED: return "the accelerator did not start";
    case DQT_ERR_TIMEOUT: return "timeout: the run was stopped";
    case DQT_ERR_BAD_HEADER: return "hardware: program magic or version mismatch";
    case DQT_ERR_BAD_CHECKSUM: return "hardware: program checksum mismatch";
    case DQT_ERR_TOO_MANY_OPS: return "hardware: too many ops";
    case DQT_ERR_BAD_OPCODE: return "hardware: unknown opcode";
    case DQT_ERR_BAD_INSTRUCTION: return "hardware: instruction field out of range";
    case DQT_ERR_HW_UNKNOWN: return "hardware: unknown error code";
    default: return "unknown status";
    }
}
