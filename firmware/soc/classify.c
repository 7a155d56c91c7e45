/* The SoC's demonstration and test firmware: load the model (or find it in the bitstream),
 * classify the test images, print each result on the UART, then exercise the runtime's
 * error paths. sim/soc.py runs it on the Verilated SoC and checks every line against the
 * golden model. Output lines (one record each, space-separated):
 *
 *   LOAD <present|windows> <status> <cycles>
 *   IMAGE <index> PRED <p> LABEL <l> CYCLES <accelerator> TOTAL <dqt_infer> BITS <b...> LOGITS <l...>
 *   CHECK <name> <expected status> <status> <ok|FAIL>
 *   END <failed checks>
 */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "dqt.h"
#include "images.h"
#include "model.h"

#define MODEL dqt_model_default

static dqt_device dev;
static dqt_result result, reference;
static int failures;

static void check(const char *name, int expected, int status) {
    int ok = status == expected;
    failures += !ok;
    printf("CHECK %s %d %d %s\n", name, expected, status, ok ? "ok" : "FAIL");
}

static void print_result(uint32_t index, uint32_t total) {
    printf("IMAGE %lu PRED %lu LABEL %u CYCLES %lu TOTAL %lu BITS",
           (unsigned long)(dqt_test_first_index + index), (unsigned long)result.prediction,
           dqt_test_labels[index], (unsigned long)result.cycles, (unsigned long)total);
    for (uint32_t i = 0; i < result.slot_count; i++)
        printf(" %u", result.bits[i]);
    printf(" LOGITS");
    for (uint32_t i = 0; i < result.classes; i++)
        printf(" %ld", (long)result.logits[i]);
    printf("\n");
}

static int load(void) {
    uint32_t start = board_cycles();
    const char *how = "present";
    int status = dqt_load_model(&dev, &MODEL, DQT_LOAD_PRESENT);
    if (status == DQT_ERR_MODEL_MISMATCH) {
        how = "windows";
        status = dqt_load_model(&dev, &MODEL, DQT_LOAD_WINDOWS);
    }
    printf("LOAD %s %d %lu\n", how, status, (unsigned long)(board_cycles() - start));
    return status;
}

/* Run image 0 and check that it gives the reference result again. */
static void check_recovered(const char *name) {
    int status = dqt_infer(&dev, dqt_test_images[0], &result);
    if (status == DQT_OK &&
        memcmp(result.logits, reference.logits, sizeof result.logits[0] * result.classes))
        status = -1;
    check(name, DQT_OK, status);
}

/* Change PROGRAM word `index` to `value` (fixing the checksum when asked), run image 0,
 * expect `expected`, then restore the word and the checksum. */
static void check_corrupt(const char *name, uint32_t index, uint32_t value, int fix_checksum,
                          int expected) {
    const uint32_t word = DQT_WIN_PROGRAM + 4u * index, sum = DQT_WIN_PROGRAM + 8u;
    uint32_t old = dqt_read(&dev, word), old_sum = dqt_read(&dev, sum);
    dqt_write(&dev, word, value);
    if (fix_checksum)
        dqt_write(&dev, sum, old_sum + value - old);
    check(name, expected, dqt_infer(&dev, dqt_test_images[0], &result));
    dqt_write(&dev, word, old);
    dqt_write(&dev, sum, old_sum);
}

static void error_paths(void) {
    dqt_device other;
    check("no-device", DQT_ERR_NO_DEVICE, dqt_init(&other, DQT_SOC_RAM_BASE));

    /* Refused models leave the device without one. */
    dqt_model bad = MODEL;
    bad.format_version = DQT_MODEL_FORMAT_VERSION + 1u;
    check("model-format-version", DQT_ERR_MODEL_VERSION, dqt_load_model(&dev, &bad, 0));
    uint32_t header[4];
    memcpy(header, MODEL.program, sizeof header);
    header[1] += 1u;                              /* the next program format version */
    bad = MODEL;
    bad.program = header;
    bad.program_words = 4;
    check("program-version", DQT_ERR_MODEL_VERSION, dqt_load_model(&dev, &bad, 0));
    bad = MODEL;
    bad.cols += 1u;
    check("config", DQT_ERR_CONFIG, dqt_load_model(&dev, &bad, 0));
    check("no-model", DQT_ERR_NO_MODEL, dqt_infer(&dev, dqt_test_images[0], &result));

    /* Loading through the windows, then the accelerator's own error codes. */
    check("load-windows", DQT_OK, dqt_load_model(&dev, &MODEL, DQT_LOAD_WINDOWS));
    check_recovered("windows-result");
    check_corrupt("hw-bad-header", 0, MODEL.program[0] ^ 1u, 0, DQT_ERR_BAD_HEADER);
    check_corrupt("hw-too-many-ops", 1, MODEL.program[1] | 0xFFFF0000u, 0,
                  DQT_ERR_TOO_MANY_OPS);
    check_corrupt("hw-bad-checksum", 2, MODEL.program[2] + 1u, 0, DQT_ERR_BAD_CHECKSUM);
    check_corrupt("hw-bad-opcode", 4, (MODEL.program[4] & ~0xFu) | 0xFu, 1,
                  DQT_ERR_BAD_OPCODE);
    /* A CONV instruction with a fixed width of 1 bit, which no array runs. */
    for (uint32_t op = 0; op < MODEL.op_count; op++) {
        uint32_t index = DQT_PROGRAM_HEADER_WORDS + DQT_PROGRAM_INSTRUCTION_WORDS * op;
        uint32_t first = MODEL.program[index];
        if ((first & 0xFu) == 1u && !(first & (1u << 8))) {
            check_corrupt("hw-bad-instruction", index, (first & ~(0xFu << 9)) | (1u << 9), 1,
                          DQT_ERR_BAD_INSTRUCTION);
            break;
        }
    }
    check_recovered("recovered-after-errors");

    /* A timeout stops the run; the next one works. */
    dev.timeout_cycles = 100;
    check("timeout", DQT_ERR_TIMEOUT, dqt_infer(&dev, dqt_test_images[0], &result));
    dev.timeout_cycles = DQT_DEFAULT_TIMEOUT_CYCLES;
    check_recovered("recovered-after-timeout");
}

int main(void) {
    printf("DQT-SOC %s: %lu images, clock %lu Hz\n", MODEL.name,
           (unsigned long)dqt_test_image_count, (unsigned long)board_clock_hz());
    int status = dqt_init(&dev, DQT_SOC_ACCEL_BASE);
    printf("INIT %d %s\n", status, dqt_strerror(status));
    if (status != DQT_OK || load() != DQT_OK)
        board_exit(1);
    for (uint32_t i = 0; i < dqt_test_image_count; i++) {
        uint32_t start = board_cycles();
        status = dqt_infer(&dev, dqt_test_images[i], &result);
        uint32_t total = board_cycles() - start;
        if (status != DQT_OK) {
            printf("IMAGE %lu ERROR %d %s\n", (unsigned long)(dqt_test_first_index + i),
                   status, dqt_strerror(status));
            board_exit(1);
        }
        if (i == 0)
            reference = result;
        print_result(i, total);
    }
    error_paths();
    printf("END %d\n", failures);
    board_exit(failures ? 2 : 0);
}
