// Verilator harness of the SoC (sim/soc.py builds it): clocks the design until the firmware
// writes EXIT or a cycle limit passes, and decodes the UART's transmit line (8N1).
//
//   Vsoc DIVISOR MAX_CYCLES
//
// Every received line goes to stdout as "<cycle> <wall seconds> <text>"; the end is
// "#EXIT <code> <cycles>" or "#LIMIT <cycles>".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "Vsoc.h"
#include "verilated.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s DIVISOR MAX_CYCLES\n", argv[0]);
        return 2;
    }
    const long divisor = std::atol(argv[1]);
    const unsigned long long max_cycles = std::strtoull(argv[2], nullptr, 10);
    auto context = new VerilatedContext;
    auto top = new Vsoc{context};
    const auto started = std::chrono::steady_clock::now();
    top->clk = 0;
    top->uart_rx = 1;
    top->eval();

    unsigned long long cycle = 0;
    bool receiving = false;
    long count = 0;
    int bit = 0, byte = 0;
    std::string line;
    while (!top->halt && cycle < max_cycles) {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        cycle++;
        const int tx = top->uart_tx;
        if (!receiving) {
            if (!tx) {                       // start bit: sample data bits in their middles
                receiving = true;
                count = divisor + divisor / 2;
                bit = byte = 0;
            }
        } else if (--count == 0) {
            if (bit < 8) {
                byte |= tx << bit++;
                count = divisor;
            } else {                         // the middle of the stop bit
                receiving = false;
                if (byte == '\n') {
                    const double wall = std::chrono::duration<double>(
                        std::chrono::steady_clock::now() - started).count();
                    std::printf("%llu %.6f %s\n", cycle, wall, line.c_str());
                    std::fflush(stdout);
                    line.clear();
                } else if (byte != '\r') {
                    line.push_back(static_cast<char>(byte));
                }
            }
        }
    }
    if (!line.empty())
        std::printf("%llu 0 %s\n", cycle, line.c_str());
    if (top->halt)
        std::printf("#EXIT %d %llu\n", top->exit_code, cycle);
    else
        std::printf("#LIMIT %llu\n", cycle);
    top->final();
    delete top;
    delete context;
    return 0;
}
