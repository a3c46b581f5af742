/*
 * libxenctrl.so.4.17 for xsplice-emu: the ten functions Debian's xen-livepatch
 * 4.17 uses, with Xen 4.17's signatures (xenctrl.h, xen/sysctl.h). Each one is
 * one request to `xsplice-emu serve` on the Unix socket named by
 * XSPLICE_EMU_SOCKET, in the wire format of xsplice_emu/server/wire.py
 * (docs/serve.md). As libxenctrl: 0 on success, else -1 with errno set.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* --- Xen 4.17's types, as xenctrl.h and xen/sysctl.h give them --------- */
typedef struct xentoollog_logger xentoollog_logger;
typedef struct xc_interface_core xc_interface;
typedef struct xen_livepatch_status {
    uint32_t state;
    int32_t rc;
} xen_livepatch_status_t;

#define LIVEPATCH_ACTION_UNLOAD  1
#define LIVEPATCH_ACTION_REVERT  2
#define LIVEPATCH_ACTION_APPLY   3
#define LIVEPATCH_ACTION_REPLACE 4

/* --- The wire format (xsplice_emu/server/wire.py) ------------------------ */
enum { OP_UPLOAD = 0, OP_GET = 1, OP_LIST = 2, OP_ACTION = 3 };
#define WIRE_VERSION 2

struct request {           /* little-endian, then name[name_len], data[data_len] */
    char magic[4];          /* "XSLP" */
    uint8_t op;
    uint8_t version;
    uint16_t name_len;
    uint32_t cmd;
    uint32_t timeout;
    uint32_t flags;
    uint32_t data_len;
} __attribute__((packed));

struct reply {             /* then data[data_len] */
    char magic[4];          /* "XSLR" */
    int32_t rc;
    uint32_t state;
    int32_t status_rc;
    uint32_t data_len;
} __attribute__((packed));

struct entry {             /* one LIST entry, then name[name_len], metadata[metadata_len] */
    uint32_t state;
    int32_t rc;
    uint16_t name_len;
    uint32_t metadata_len;
} __attribute__((packed));

struct xc_interface_core {
    int fd;
};

static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while ( len )
    {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if ( n < 0 && errno == EINTR )
            continue;
        if ( n <= 0 )
            return -1;
        p += n;
        len -= n;
    }
    return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
    char *p = buf;

    while ( len )
    {
        ssize_t n = recv(fd, p, len, 0);

        if ( n < 0 && errno == EINTR )
            continue;
        if ( n == 0 )
            errno = ECONNRESET;
        if ( n <= 0 )
            return -1;
        p += n;
        len -= n;
    }
    return 0;
}

/*
 * One request and its reply. *data (malloc'd, for the caller to free) gets
 * the reply's data when asked for. The reply's rc becomes errno; a refusal's
 * data (the server's reason) is read and dropped.
 */
static int call(xc_interface *xch, uint8_t op, const char *name, uint32_t cmd,
                uint32_t timeout, uint32_t flags, const void *payload,
                uint32_t size, struct reply *reply, char **data)
{
    struct request req = { .magic = "XSLP", .op = op, .version = WIRE_VERSION,
                           .cmd = cmd, .timeout = timeout, .flags = flags,
                           .data_len = size };
    size_t name_len = name ? strnlen(name, 0x10000) : 0;
    char *body = NULL;

    if ( !xch || name_len > 0xffff )
    {
        errno = EINVAL;
        return -1;
    }
    req.name_len = name_len;
    if ( send_all(xch->fd, &req, sizeof(req)) ||
         send_all(xch->fd, name, name_len) ||
         send_all(xch->fd, payload, size) ||
         recv_all(xch->fd, reply, sizeof(*reply)) )
        return -1;
    if ( memcmp(reply->magic, "XSLR", 4) )
    {
        errno = EPROTO;
        return -1;
    }
    if ( reply->data_len )
    {
        body = malloc(reply->data_len);
        if ( !body )
            return -1;
        if ( recv_all(xch->fd, body, reply->data_len) )
        {
            free(body);
            return -1;
        }
    }
    if ( reply->rc < 0 )
    {
        free(body);     /* a refusal's reason: Xen answers with the errno alone */
        errno = -reply->rc;
        return -1;
    }
    if ( data )
        *data = body;
    else
        free(body);
    return 0;
}

xc_interface *xc_interface_open(xentoollog_logger *logger,
                                       xentoollog_logger *dombuild_logger,
                                       unsigned open_flags)
{
    const char *path = getenv("XSPLICE_EMU_SOCKET");
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    xc_interface *xch;
    int fd, saved;

    (void)logger; (void)dombuild_logger; (void)open_flags;
    if ( !path || !*path )
    {
        fprintf(stderr, "xc: error: XSPLICE_EMU_SOCKET is not set "
                "(the socket of `xsplice-emu serve`)\n");
        errno = ENOENT;
        return NULL;
    }
    if ( strlen(path) >= sizeof(addr.sun_path) )
    {
        fprintf(stderr, "xc: error: socket path too long: %s\n", path);
        errno = ENAMETOOLONG;
        return NULL;
    }
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if ( fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) )
    {
        saved = errno;
        fprintf(stderr, "xc: error: Could not connect to xsplice-emu at %s "
                "(%d = %s)\n", path, saved, strerror(saved));
        if ( fd >= 0 )
            close(fd);
        errno = saved;
        return NULL;
    }
    xch = malloc(sizeof(*xch));
    if ( !xch )
    {
        close(fd);
        return NULL;
    }
    xch->fd = fd;
    return xch;
}

int xc_interface_close(xc_interface *xch)
{
    if ( !xch )
        return 0;
    close(xch->fd);
    free(xch);
    return 0;
}

int xc_livepatch_upload(xc_interface *xch, char *name,
                               unsigned char *payload, uint32_t size)
{
    struct reply reply;

    return call(xch, OP_UPLOAD, name, 0, 0, 0, payload, size, &reply, NULL);
}

int xc_livepatch_get(xc_interface *xch, char *name,
                            xen_livepatch_status_t *status)
{
    struct reply reply;

    if ( call(xch, OP_GET, name, 0, 0, 0, NULL, 0, &reply, NULL) )
        return -1;
    status->state = reply.state;
    status->rc = reply.status_rc;
    return 0;
}

static const struct entry *entry_at(const char *data, uint32_t data_len,
                                    uint32_t *off)
{
    const struct entry *e = (const struct entry *)(data + *off);

    if ( *off + sizeof(*e) > data_len ||
         (uint64_t)*off + sizeof(*e) + e->name_len + e->metadata_len > data_len )
        return NULL;
    *off += sizeof(*e) + e->name_len + e->metadata_len;
    return e;
}

/*
 * Fetch the whole list and hand each entry to visit(); *nr is the number of
 * entries. A truncated reply is EPROTO; a visitor's nonzero return stops the
 * walk with that errno.
 */
static int walk_list(xc_interface *xch, unsigned int *nr,
                     int (*visit)(const struct entry *e, uint32_t i, void *ctx),
                     void *ctx)
{
    struct reply reply;
    const struct entry *e;
    char *data = NULL;
    uint32_t off = 0, i;
    int err = 0;

    if ( call(xch, OP_LIST, NULL, 0, 0, 0, NULL, 0, &reply, &data) )
        return -1;
    for ( i = 0; i < reply.state && !err; i++ )
    {
        if ( !(e = entry_at(data, reply.data_len, &off)) )
            err = EPROTO;
        else
            err = visit(e, i, ctx);
    }
    free(data);
    if ( err )
    {
        errno = err;
        return -1;
    }
    *nr = reply.state;
    return 0;
}

struct list_sizes {
    uint32_t name_total_size, metadata_total_size;
};

static int add_sizes(const struct entry *e, uint32_t i, void *ctx)
{
    struct list_sizes *sizes = ctx;

    (void)i;
    sizes->name_total_size += e->name_len + 1;
    sizes->metadata_total_size += e->metadata_len;
    return 0;
}

int xc_livepatch_list_get_sizes(xc_interface *xch, unsigned int *nr,
                                       uint32_t *name_total_size,
                                       uint32_t *metadata_total_size)
{
    if ( !nr || !name_total_size || !metadata_total_size )
    {
        errno = EINVAL;
        return -1;
    }
    struct list_sizes sizes = { 0, 0 };

    if ( walk_list(xch, nr, add_sizes, &sizes) )
        return -1;
    *name_total_size = sizes.name_total_size;
    *metadata_total_size = sizes.metadata_total_size;
    return 0;
}

/* Where xc_livepatch_list's window of entries is copied to. */
struct list_window {
    unsigned int start, max, done;
    xen_livepatch_status_t *info;
    char *name, *metadata;
    uint32_t *len, *metadata_len, name_off, name_total_size, metadata_off, metadata_total_size;
};

static int copy_entry(const struct entry *e, uint32_t i, void *ctx)
{
    struct list_window *w = ctx;

    if ( i < w->start || w->done == w->max )
        return 0;
    if ( w->name_off + e->name_len + 1 > w->name_total_size ||
         w->metadata_off + e->metadata_len > w->metadata_total_size )
        return E2BIG;
    w->info[w->done].state = e->state;
    w->info[w->done].rc = e->rc;
    memcpy(w->name + w->name_off, e + 1, e->name_len);
    w->name[w->name_off + e->name_len] = '\0';
    w->len[w->done] = e->name_len + 1;
    memcpy(w->metadata + w->metadata_off, (const char *)(e + 1) + e->name_len, e->metadata_len);
    w->metadata_len[w->done] = e->metadata_len;
    w->name_off += e->name_len + 1;
    w->metadata_off += e->metadata_len;
    w->done++;
    return 0;
}

int xc_livepatch_list(xc_interface *xch, const unsigned int max,
                             const unsigned int start,
                             xen_livepatch_status_t *info,
                             char *name, uint32_t *len,
                             const uint32_t name_total_size,
                             char *metadata, uint32_t *metadata_len,
                             const uint32_t metadata_total_size,
                             unsigned int *done, unsigned int *left)
{
    struct list_window w = {
        .start = start, .max = max, .info = info, .name = name, .len = len,
        .metadata = metadata, .metadata_len = metadata_len, .name_total_size = name_total_size,
        .metadata_total_size = metadata_total_size,
    };
    unsigned int nr;

    if ( !max || !info || !name || !len || !metadata || !metadata_len ||
         !done || !left )
    {
        errno = EINVAL;
        return -1;
    }
    if ( walk_list(xch, &nr, copy_entry, &w) )
        return -1;
    *done = w.done;
    *left = nr > start + w.done ? nr - start - w.done : 0;
    return 0;
}

static int action(xc_interface *xch, char *name, uint32_t cmd,
                  uint32_t timeout, uint32_t flags)
{
    struct reply reply;

    return call(xch, OP_ACTION, name, cmd, timeout, flags, NULL, 0, &reply, NULL);
}

int xc_livepatch_apply(xc_interface *xch, char *name, uint32_t timeout,
                              uint32_t flags)
{
    return action(xch, name, LIVEPATCH_ACTION_APPLY, timeout, flags);
}

int xc_livepatch_revert(xc_interface *xch, char *name, uint32_t timeout,
                               uint32_t flags)
{
    return action(xch, name, LIVEPATCH_ACTION_REVERT, timeout, flags);
}

int xc_livepatch_unload(xc_interface *xch, char *name, uint32_t timeout,
                               uint32_t flags)
{
    return action(xch, name, LIVEPATCH_ACTION_UNLOAD, timeout, flags);
}

int xc_livepatch_replace(xc_interface *xch, char *name, uint32_t timeout,
                                uint32_t flags)
{
    return action(xch, name, LIVEPATCH_ACTION_REPLACE, timeout, flags);
}
