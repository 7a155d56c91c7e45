/* The SoC's peripherals for the firmware (dqt_soc.h is the memory map). */
#ifndef DQT_BOARD_H
#define DQT_BOARD_H

#include <stdint.h>

#include "dqt_soc.h"

#define BOARD_REG(base, offset) (*(volatile uint32_t *)((base) + (offset)))

/* Clock cycles since power-on (low 32 bits: differences of up to 2^32 cycles). */
static inline uint32_t board_cycles(void) {
    return BOARD_REG(DQT_SOC_SYSTEM_BASE, DQT_SOC_SYSTEM_CYCLES);
}

static inline uint32_t board_clock_hz(void) {
    return BOARD_REG(DQT_SOC_SYSTEM_BASE, DQT_SOC_SYSTEM_CLOCK_HZ);
}

/* Send one byte (the UART holds the bus while its transmitter is busy). */
static inline void board_putc(char c) {
    BOARD_REG(DQT_SOC_UART_BASE, DQT_SOC_UART_DATA) = (uint8_t)c;
}


/* End: a simulation stops with `code`; on a board the CPU stays here. */
void board_exit(int code) __attribute__((noreturn));

#endif
