/* dqt-hw firmware runtime: drive the accelerator from a CPU on the same bus.
 *
 * C99, no dynamic allocation, no libc calls. The register map comes from the generated
 * dqt_regs.h (dqt_hw/accel/regmap.py); a model comes from `python -m dqt_hw.firmware PKG`,
 * which writes a `dqt_model` as C arrays. The steps are those of the Python driver
 * (dqt_hw/accel/driver.py): check ID, VERSION and CONFIG; load the program, the data
 * memory image (weights and constants) and the controller table through the memory windows
 * (or check that the bitstream
 * already holds the model); per image write the IMAGE window at the input's place, set
 * CONTROL.START, poll STATUS until DONE, read the logits (WIDE), the chosen bits (BITS) and
 * CYCLES. docs/firmware.md describes the API.
 */
#ifndef DQT_H
#define DQT_H

#include <stdint.h>

#include "dqt_regs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the `dqt_model` structure below; `python -m dqt_hw.firmware` writes it into
 * every model and dqt_load_model refuses any other. */
#define DQT_MODEL_FORMAT_VERSION 1u

/* Capacity of a `dqt_result` (override at compile time for wider classifiers). */
#ifndef DQT_MAX_CLASSES
#define DQT_MAX_CLASSES 32u
#endif
#define DQT_MAX_SLOTS DQT_REG_BITS_COUNT

/* Default timeout of one inference, in accelerator clock cycles. */
#ifndef DQT_DEFAULT_TIMEOUT_CYCLES
#define DQT_DEFAULT_TIMEOUT_CYCLES 100000000u
#endif

/* Status codes: 0 on success, a positive code on failure (dqt_strerror names it). Codes
 * DQT_ERR_HW_BASE + n are the accelerator's STATUS.ERROR_CODE n. */
enum dqt_status {
    DQT_OK = 0,
    DQT_ERR_ARGUMENT,        /* a NULL pointer or an out-of-range argument */
    DQT_ERR_NO_DEVICE,       /* the ID register is not "DQTA": no accelerator at that address */
    DQT_ERR_HW_VERSION,      /* hardware or register-map version differs from dqt_regs.h */
    DQT_ERR_MODEL_VERSION,   /* model structure or program format version differs */
    DQT_ERR_CONFIG,          /* the model was compiled for another accelerator configuration */
    DQT_ERR_MODEL_SIZE,      /* the model does not fit the hardware's windows or a dqt_result */
    DQT_ERR_NO_MODEL,        /* dqt_infer before a successful dqt_load_model */
    DQT_ERR_MODEL_MISMATCH,  /* DQT_LOAD_PRESENT: the accelerator holds another program */
    DQT_ERR_BUS,             /* STATUS.BUS_ERROR: an access to a window while busy, or an
                                undefined address */
    DQT_ERR_START_IGNORED,   /* STATUS.START_IGNORED: START came while a run was busy */
    DQT_ERR_NOT_STARTED,     /* after START the accelerator was neither busy nor done */
    DQT_ERR_TIMEOUT,         /* no DONE within the timeout; the run was stopped (SOFT_RESET) */
    DQT_ERR_HW_BASE = 32,
    DQT_ERR_BAD_HEADER = DQT_ERR_HW_BASE + DQT_ERROR_BAD_HEADER,
    DQT_ERR_BAD_CHECKSUM = DQT_ERR_HW_BASE + DQT_ERROR_BAD_CHECKSUM,
    DQT_ERR_TOO_MANY_OPS = DQT_ERR_HW_BASE + DQT_ERROR_TOO_MANY_OPS,
    DQT_ERR_BAD_OPCODE = DQT_ERR_HW_BASE + DQT_ERROR_BAD_OPCODE,
    DQT_ERR_BAD_INSTRUCTION = DQT_ERR_HW_BASE + DQT_ERROR_BAD_INSTRUCTION,
    DQT_ERR_HW_UNKNOWN = DQT_ERR_HW_BASE + 255 /* an error code this runtime does not know */
};

/* A compiled model (written by `python -m dqt_hw.firmware`). The data memory image (weights,
 * then the requantizer constants) holds two 32-bit words per 64-bit memory word, low half
 * first: the order the bus takes. */
typedef struct dqt_model {
    uint32_t format_version;        /* DQT_MODEL_FORMAT_VERSION */
    const char *name;
    /* The accelerator configuration it was compiled for (checked against CONFIG etc.). */
    uint32_t cols, bits_mask, max_terms, data_words;
    const uint32_t *program;        /* program memory image, header first */
    uint32_t program_words;
    const uint32_t *data;           /* 2 * data_words_loaded bus words */
    uint32_t data_words_loaded;     /* 64-bit words from data word 0 */
    const uint32_t *table;          /* controller table */
    uint32_t table_words;
    /* The input tensor: master codes (C, H, W) stored pixel-major with `input_cp` channels
     * per pixel from data word `input_base`. */
    uint32_t input_base, input_channels, input_height, input_width, input_cp;
    /* The logits: `classes` 32-bit values from wide index `logits_base`. */
    uint32_t logits_base, classes;
    /* The controlled layers' slots, in the order of the package's `bits` output. */
    const uint8_t *slots;
    uint32_t slot_count;
    uint32_t op_count;              /* instructions (OP_CYCLES entries) */
} dqt_model;

/* One accelerator. Fill it with dqt_init; fields may be read, and `timeout_cycles` set. */
typedef struct dqt_device {
    uintptr_t base;                 /* bus address of the register map */
    const dqt_model *model;         /* the loaded model, NULL before dqt_load_model */
    uint32_t timeout_cycles;        /* a run longer than this is stopped: DQT_ERR_TIMEOUT */
    uint32_t config, max_terms, data_words, version;   /* what the hardware reported */
    uint32_t last_status;           /* STATUS at the end of the last run or check */
} dqt_device;

/* One image's results. */
typedef struct dqt_result {
    int32_t logits[DQT_MAX_CLASSES];
    uint32_t classes;
    uint32_t prediction;            /* argmax of the logits (the first of equal maxima) */
    uint8_t bits[DQT_MAX_SLOTS];    /* chosen bit-width of each controlled layer */
    uint32_t slot_count;
    uint32_t cycles;                /* accelerator cycles of the run (CYCLES) */
} dqt_result;

/* How dqt_load_model gets the model into the accelerator. */
enum dqt_load {
    DQT_LOAD_WINDOWS = 0,   /* write program, data image and table over the bus */
    DQT_LOAD_PRESENT = 1    /* the bitstream holds it: only check the program's header and
                               checksum against the model's */
};

/* Check the accelerator at bus address `base` (ID, hardware and register-map versions),
 * stop any run and clear its status. */
int dqt_init(dqt_device *dev, uintptr_t base);

/* Check that `model` fits the hardware (structure and program versions, configuration,
 * sizes) and load it; `how` is a dqt_load. On failure no model is loaded. */
int dqt_load_model(dqt_device *dev, const dqt_model *model, int how);

/* Classify one image: `codes` are the input's master codes in (C, H, W) order, as the
 * golden model takes them. Fills `result`. */
int dqt_infer(dqt_device *dev, const uint8_t *codes, dqt_result *result);

/* Cycles of instruction `op` (program order) in the last run: its fetch, check and run,
   from the OP_CYCLES entries (each op's end). */
uint32_t dqt_op_cycles(const dqt_device *dev, uint32_t op);

/* A short description of a status code. */
const char *dqt_strerror(int status);

/* Raw register access at a byte offset of the register map (dqt_regs.h names them). */
static inline uint32_t dqt_read(const dqt_device *dev, uint32_t offset) {
    return *(volatile const uint32_t *)(dev->base + offset);
}

static inline void dqt_write(const dqt_device *dev, uint32_t offset, uint32_t value) {
    *(volatile uint32_t *)(dev->base + offset) = value;
}

#ifdef __cplusplus
}
#endif

#endif /* DQT_H */
