/* stdout on the UART (picolibc's tinystdio), and exit through the system controller. */
#include <stdio.h>

#include "board.h"

static int uart_put(char c, FILE *file) {
    (void)file;
    if (c == '\n')
        board_putc('\r');
    board_putc(c);
    return (unsigned char)c;
}

static FILE uart_file = FDEV_SETUP_STREAM(uart_put, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdout = &uart_file;
FILE *const stderr = &uart_file;

void board_exit(int code) {
    BOARD_REG(DQT_SOC_SYSTEM_BASE, DQT_SOC_SYSTEM_EXIT) = (uint32_t)code;
    for (;;) {
    }
}
