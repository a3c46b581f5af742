/*
 * The debug console's port answered in C: a vCPU's OUT of a byte to it is
 * kept in a buffer, without Python, until a byte ends the line (or the
 * buffer is full). That byte and every OUT to another port go to the
 * host's Python hook, which takes the buffered bytes first (Ports in
 * devices.py). A line then reaches the host whole, at the virtual time of
 * its last byte, as it did byte by byte; the slices that print no whole
 * line run no Python (the slice loop keeps them).
 */
#include <stddef.h>
#include <stdint.h>

typedef void (*out_fn)(void *uc, uint32_t port, int size, uint32_t value, void *user);

#define CONSOLE_BYTES 256

/* Shared with Python (ConsolePort in __init__.py, same layout): one per vCPU. */
struct console_port {
    out_fn host_out; /* the host's UC_HOOK_INSN callback for OUT */
    uint32_t port;
    uint32_t length;
    uint8_t bytes[CONSOLE_BYTES];
};

/* A UC_HOOK_INSN callback for OUT, with a struct console_port as its user data. */
void on_out(void *uc, uint32_t port, int size, uint32_t value, void *user)
{
    struct console_port *c = user;
    uint8_t byte = (uint8_t)value;
    if (port == c->port && byte != '\n' && c->length < CONSOLE_BYTES) {
        c->bytes[c->length++] = byte;
        return;
    }
    c->host_out(uc, port, size, value, NULL);
}
