/* Stand-ins for the libxenctrl / libxengnttab / libxenevtchn calls of Xen's C xenstored
 * and for dom0's /proc/xen/xsd_{port,kva}, so that the unmodified daemon runs on a
 * machine without Xen (LD_PRELOAD). Test use only; see tests/xenstore_real_xenstored.rs.
 *
 * dom0's ring is an idle zeroed page. With $XS_SHIM_DIR set, guests can be emulated too:
 *   - the ring page of domain D is the file $XS_SHIM_DIR/ring-D (INTRODUCE D|0|1|);
 *   - xenstored's event channel fd is the FIFO $XS_SHIM_DIR/evtchn: a guest writes its
 *     port (a native u32, 100 + D) there after producing requests;
 *   - xenstored notifies domain D by writing a byte to the FIFO $XS_SHIM_DIR/notify-D.
 * Every domain id below 1000 "exists" (xc_domain_getinfo). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xenctrl.h>

#define PORT_BASE 100
#define MAX_DOMS 1000

static int dummy;
static int evfd = -1;
static int notify_fd[MAX_DOMS];

static const char *shim_dir(void) { return getenv("XS_SHIM_DIR"); }

xc_interface *xc_interface_open(xentoollog_logger *a, xentoollog_logger *b, unsigned c)
{ (void)a; (void)b; (void)c; return (xc_interface *)&dummy; }
int xc_interface_close(xc_interface *x) { (void)x; return 0; }
int xc_domain_getinfo(xc_interface *x, uint32_t first, unsigned int max, xc_dominfo_t *info)
{
    (void)x;
    if (max < 1 || first >= MAX_DOMS)
        return 0;
    memset(info, 0, sizeof(*info));
    info->domid = first;
    info->running = 1;
    return 1;
}

void *xengnttab_open(void *l, unsigned f) { (void)l; (void)f; return &dummy; }
int xengnttab_close(void *x) { (void)x; return 0; }
int xengnttab_set_max_grants(void *x, uint32_t n) { (void)x; (void)n; return 0; }
void *xengnttab_map_grant_ref(void *x, uint32_t dom, uint32_t ref, int prot)
{
    (void)x; (void)ref;
    char path[512];
    if (!shim_dir())
        return NULL;
    snprintf(path, sizeof(path), "%s/ring-%u", shim_dir(), dom);
    int (*real_open)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    int fd = real_open(path, O_RDWR);
    if (fd < 0)
        return NULL;
    void *p = mmap(NULL, 4096, prot, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}
int xengnttab_unmap(void *x, void *a, uint32_t n) { (void)x; return munmap(a, 4096 * n); }

void *xenevtchn_open(void *l, unsigned f)
{
    (void)l; (void)f;
    if (shim_dir()) {
        char path[512];
        snprintf(path, sizeof(path), "%s/evtchn", shim_dir());
        int (*real_open)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
        evfd = real_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    } else {
        evfd = eventfd(0, EFD_CLOEXEC);
    }
    return evfd < 0 ? NULL : &dummy;
}
void *xenevtchn_fdopen(void *l, int fd, unsigned f) { (void)l; (void)f; evfd = fd; return &dummy; }
int xenevtchn_fd(void *x) { (void)x; return evfd; }
int xenevtchn_bind_virq(void *x, unsigned v) { (void)x; (void)v; return 10; }
int xenevtchn_bind_interdomain(void *x, uint32_t dom, unsigned p) { (void)x; (void)p; return PORT_BASE + dom; }
int xenevtchn_notify(void *x, unsigned port)
{
    (void)x;
    unsigned dom = port - PORT_BASE;
    if (!shim_dir() || port < PORT_BASE + 1 || dom >= MAX_DOMS)
        return 0;
    if (notify_fd[dom] <= 0) {
        char path[512];
        snprintf(path, sizeof(path), "%s/notify-%u", shim_dir(), dom);
        int (*real_open)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
        notify_fd[dom] = real_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (notify_fd[dom] < 0)
            return 0;
    }
    char b = 1;
    (void)!write(notify_fd[dom], &b, 1); /* a full FIFO is already "notified" */
    return 0;
}
int xenevtchn_pending(void *x)
{
    (void)x;
    uint32_t port;
    if (read(evfd, &port, sizeof(port)) == (ssize_t)sizeof(port))
        return (int)port;
    /* Never -1 (xenstored exits): dom0's port, handled as a no-op event. */
    return PORT_BASE;
}
int xenevtchn_unmask(void *x, unsigned p) { (void)x; (void)p; return 0; }
int xenevtchn_unbind(void *x, unsigned p) { (void)x; (void)p; return 0; }

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (strcmp(path, "/proc/xen/xsd_port") == 0) {
        int fd = memfd_create("xsd_port", 0);
        if (fd >= 0 && (write(fd, "100", 3) != 3 || lseek(fd, 0, SEEK_SET) != 0))
            return -1;
        return fd;
    }
    if (strcmp(path, "/proc/xen/xsd_kva") == 0) {
        int fd = memfd_create("xsd_kva", 0);
        if (fd >= 0 && ftruncate(fd, 4096) != 0)
            return -1;
        return fd;
    }
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    return real(path, flags, mode);
}
