/*
 * minimig: a small stand-in for QEMU's migration status code.
 *
 * It has the same shape and the same race as QEMU 6.2's
 * fill_source_migration_info() (LP#1994002): the main thread answers
 * query-migrate by reading MigrationState.state once to decide what to fill
 * in and, in the unpatched build, a second time to publish the status, while
 * the migration thread moves the state with a compare-and-swap and no lock.
 * Built with -DREAD_STATE_ONCE it behaves like upstream 552de79b ("migration:
 * Read state once", QEMU 7.1).
 *
 * Function names, argument names and the enum numbering follow QEMU 4.2-9.0,
 * so the probe profiles written for QEMU (symbolic placement by function and
 * expression) work here unchanged, and tests can run them against a target
 * that starts in milliseconds.
 *
 * The monitor is a QMP subset on a unix socket, one client at a time,
 * one JSON request per line.
 *
 * usage: minimig -qmp unix:PATH,server,wait=off [-name NAME[,debug-threads=on]]
 *                [--setup-ms N] [--transfer-ms N] [--ram-mb N] [--bql-completion]
 *        minimig --stress N   (probe hits as fast as possible, for benchmarks)
 *
 * The scenarios a hunt drives are here too, shaped like QEMU's: `migrate`
 * to tcp:A.B.C.D:PORT streams pages to the peer listening there and fails
 * when it dies (with no listener, or any other uri, the pages go nowhere);
 * migrate_cancel during setup or active; the pause-before-switchover
 * capability with migrate-continue. There is no postcopy-ram capability.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* MigrationStatus, numbered as in QEMU 4.2 to 9.0 (qapi/migration.json) */

typedef enum MigrationStatus {
    MIGRATION_STATUS_NONE = 0,
    MIGRATION_STATUS_SETUP = 1,
    MIGRATION_STATUS_CANCELLING = 2,
    MIGRATION_STATUS_CANCELLED = 3,
    MIGRATION_STATUS_ACTIVE = 4,
    MIGRATION_STATUS_POSTCOPY_ACTIVE = 5,
    MIGRATION_STATUS_POSTCOPY_PAUSED = 6,
    MIGRATION_STATUS_POSTCOPY_RECOVER = 7,
    MIGRATION_STATUS_COMPLETED = 8,
    MIGRATION_STATUS_FAILED = 9,
    MIGRATION_STATUS_COLO = 10,
    MIGRATION_STATUS_PRE_SWITCHOVER = 11,
    MIGRATION_STATUS_DEVICE = 12,
    MIGRATION_STATUS_WAIT_UNPLUG = 13,
    MIGRATION_STATUS__MAX = 14,
} MigrationStatus;

/*
 * The names, exported the way QEMU's QAPI generator emits them (QEMU 6.1
 * and later: include/qapi/util.h, qapi-types-migration.c): migrace reads
 * them from the binary, so this table is what names minimig's states.
 */
typedef struct QEnumLookup {
    const char *const *array;
    const unsigned char *const special_features;
    const int size;
} QEnumLookup;

const QEnumLookup MigrationStatus_lookup = {
    .array = (const char *const[]) {
        [MIGRATION_STATUS_NONE] = "none",
        [MIGRATION_STATUS_SETUP] = "setup",
        [MIGRATION_STATUS_CANCELLING] = "cancelling",
        [MIGRATION_STATUS_CANCELLED] = "cancelled",
        [MIGRATION_STATUS_ACTIVE] = "active",
        [MIGRATION_STATUS_POSTCOPY_ACTIVE] = "postcopy-active",
        [MIGRATION_STATUS_POSTCOPY_PAUSED] = "postcopy-paused",
        [MIGRATION_STATUS_POSTCOPY_RECOVER] = "postcopy-recover",
        [MIGRATION_STATUS_COMPLETED] = "completed",
        [MIGRATION_STATUS_FAILED] = "failed",
        [MIGRATION_STATUS_COLO] = "colo",
        [MIGRATION_STATUS_PRE_SWITCHOVER] = "pre-switchover",
        [MIGRATION_STATUS_DEVICE] = "device",
        [MIGRATION_STATUS_WAIT_UNPLUG] = "wait-unplug",
    },
    .size = MIGRATION_STATUS__MAX
};

const char *MigrationStatus_str(int status)
{
    if (status < 0 || status >= MigrationStatus_lookup.size) {
        return "unknown";
    }
    return MigrationStatus_lookup.array[status];
}

/* QEMU's qatomic_read/qatomic_set: relaxed, untorn, no ordering promises. */
#define qatomic_read(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define qatomic_set(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* ------------------------------------------------------------------ */
/* Migration state */

typedef struct MigrationState {
    /*
     * Fields before `state` keep it away from offset 0, as in QEMU, so
     * that offset discovery ($rdi - migrate_get_current()) is exercised
     * for real.
     */
    pthread_t thread;
    bool thread_started;
    int64_t start_time;        /* ms, monotonic: when `migrate` ran */
    int64_t setup_time;        /* ms spent in SETUP */
    int64_t total_time;        /* ms, set before ACTIVE -> COMPLETED */
    int64_t downtime;          /* ms of the final stop-and-copy */
    int64_t expected_downtime; /* ms, estimate while ACTIVE */
    double mbps;
    int state;                 /* MigrationStatus, changed by migrate_set_state() */
    int shutdown;              /* asks the migration thread to leave */
    int to_dst_fd;             /* the destination's socket, -1 without one */
    char error_desc[160];      /* why the migration failed (query-migrate's error-desc) */
    int pause_posted;          /* migrate-continue: leave PRE_SWITCHOVER (QEMU's pause_sem) */
    struct sockaddr_in dst;    /* where `migrate` sends the pages; port 0: nowhere */
} MigrationState;

/* migrate-set-capabilities; only the ones minimig implements exist. */
static bool cap_pause_before_switchover;

static MigrationState current_migration;

MigrationState *migrate_get_current(void)
{
    return &current_migration;
}

/* ------------------------------------------------------------------ */
/* QMP output types, named after QEMU's generated qapi types */

typedef struct MigrationStats {
    int64_t transferred;
    int64_t remaining;
    int64_t total;
    int64_t duplicate;
    int64_t normal;
    int64_t normal_bytes;
    double mbps;
    int64_t dirty_sync_count;
    int64_t page_size;
    int64_t pages_per_second;
} MigrationStats;

/*
 * QEMU's ram_counters, a MigrationStats as in QEMU 5.2 (migration/ram.c):
 * written by the migration thread, read unlocked. Its mbps stays unused: the
 * rate is kept in MigrationState, as in QEMU.
 */
static MigrationStats ram_counters;

/* has_status then status keeps info->status at offset 4, as in QEMU builds. */
typedef struct MigrationInfo {
    bool has_status;
    MigrationStatus status;
    bool has_ram;
    MigrationStats *ram;
    bool has_total_time;
    int64_t total_time;
    bool has_expected_downtime;
    int64_t expected_downtime;
    bool has_downtime;
    int64_t downtime;
    bool has_setup_time;
    int64_t setup_time;
    bool has_error_desc;
    char *error_desc;
} MigrationInfo;

/* ------------------------------------------------------------------ */
/* Options */

static long opt_setup_ms = 50;
static long opt_transfer_ms = 200;
static long opt_ram_mb = 128;
/* Take the big lock around ACTIVE -> COMPLETED, as QEMU 10 does (docs/qemu-facts.md). */
static bool opt_bql_completion = false;

/*
 * QEMU's big lock, used only with --bql-completion: the main thread holds it
 * while it serves a command, the migration thread around its final step.
 * A replay that holds the migration thread inside it can never see the main
 * thread reach the read probe: the schedule is infeasible, and migrace must
 * say so rather than hang.
 */
static pthread_mutex_t bql = PTHREAD_MUTEX_INITIALIZER;

static __attribute__((noinline)) void bql_lock(void)
{
    if (opt_bql_completion) {
        pthread_mutex_lock(&bql);
    }
}

static __attribute__((noinline)) void bql_unlock(void)
{
    if (opt_bql_completion) {
        pthread_mutex_unlock(&bql);
    }
}
static const char *opt_qmp_path;

#define PAGE_SIZE 4096
#define TRANSFER_STEP_MS 5
#define STOP_COPY_MS 2
#define DEFAULT_DOWNTIME_LIMIT_MS 300

/* ------------------------------------------------------------------ */
/* Clocks and sleeping */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* resume the remainder */
    }
}

/*
 * Sleep in short slices so a cancel or a shutdown is noticed promptly.
 * Returns false when the thread should stop waiting.
 */
static bool sleep_while_state(MigrationState *s, long ms, int expected_state)
{
    int64_t deadline = now_ms() + ms;
    for (;;) {
        if (qatomic_read(&s->shutdown) || qatomic_read(&s->state) != expected_state) {
            return false;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return true;
        }
        sleep_ms(left < TRANSFER_STEP_MS ? left : TRANSFER_STEP_MS);
    }
}

/* ------------------------------------------------------------------ */
/* Events: queued by any thread, written to the client by the main thread */

typedef struct PendingEvent {
    int status;
    int64_t seconds;
    int64_t microseconds;
} PendingEvent;

#define EVENT_RING 64
static pthread_mutex_t event_lock = PTHREAD_MUTEX_INITIALIZER;
static PendingEvent event_ring[EVENT_RING];
static unsigned event_head, event_count;

/* Self-pipe: wakes the poll loop for events and signals. */
static int wake_pipe[2] = { -1, -1 };
static volatile sig_atomic_t quit_signal;

static void wake_main_loop(void)
{
    char c = 'w';
    /* A full pipe already holds a pending wake-up: nothing is lost. */
    ssize_t r = write(wake_pipe[1], &c, 1);
    (void)r;
}

/*
 * QEMU only sends MIGRATION events once the `events` capability is on;
 * libvirt always turns it on, so minimig always sends them.
 */
static void migrate_generate_event(int new_state)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    pthread_mutex_lock(&event_lock);
    if (event_count == EVENT_RING) {
        /* Nobody drained the queue (main thread held): keep the newest. */
        event_head = (event_head + 1) % EVENT_RING;
        event_count--;
    }
    PendingEvent *e = &event_ring[(event_head + event_count) % EVENT_RING];
    e->status = new_state;
    e->seconds = tv.tv_sec;
    e->microseconds = tv.tv_usec;
    event_count++;
    pthread_mutex_unlock(&event_lock);
    wake_main_loop();
}

/*
 * The transition probe: gdb breaks at the entry and reads `*state`,
 * `old_state` and `new_state` (or $rdi, $esi, $edx). Same signature and
 * the same compare-and-swap as QEMU's; keep it external and out of line.
 */
__attribute__((noinline)) void migrate_set_state(int *state, int old_state, int new_state)
{
    int expected = old_state;

    assert(new_state < MIGRATION_STATUS__MAX);
    if (__atomic_compare_exchange_n(state, &expected, new_state, false,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        migrate_generate_event(new_state);
    }
}

static bool migration_is_running(int state)
{
    return state == MIGRATION_STATUS_SETUP || state == MIGRATION_STATUS_ACTIVE ||
           state == MIGRATION_STATUS_CANCELLING || state == MIGRATION_STATUS_PRE_SWITCHOVER ||
           state == MIGRATION_STATUS_DEVICE;
}

/*
 * The destination: a TCP peer that takes the pages, connected in SETUP as
 * QEMU's socket_outgoing_migration does. Unlike QEMU, nobody listening is
 * not an error: minimig then migrates to nowhere, as it always did. Once
 * connected, a send that fails (the destination died) fails the migration
 * with the reason in error-desc, as in QEMU.
 */
static void migration_connect(MigrationState *s)
{
    if (s->dst.sin_port == 0) {
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&s->dst, sizeof(s->dst)) == 0) {
        s->to_dst_fd = fd;
    } else if (fd >= 0) {
        close(fd);
    }
}

/* One step's worth of pages to the destination; false once it is gone. */
static bool migration_send(MigrationState *s)
{
    static const char page[PAGE_SIZE];
    if (s->to_dst_fd < 0) {
        return true;
    }
    if (send(s->to_dst_fd, page, sizeof(page), MSG_NOSIGNAL) < 0) {
        snprintf(s->error_desc, sizeof(s->error_desc), "Unable to write to socket: %s",
                 strerror(errno));
        return false;
    }
    return true;
}

static void migration_disconnect(MigrationState *s)
{
    if (s->to_dst_fd >= 0) {
        close(s->to_dst_fd);
        s->to_dst_fd = -1;
    }
}

/*
 * QEMU's migration_maybe_pause(): with pause-before-switchover, stop in
 * PRE_SWITCHOVER until migrate-continue, then go on to DEVICE. Returns the
 * state the completion moves from.
 */
static int migration_maybe_pause(MigrationState *s)
{
    if (!cap_pause_before_switchover) {
        return MIGRATION_STATUS_ACTIVE;
    }
    qatomic_set(&s->pause_posted, 0);
    migrate_set_state(&s->state, MIGRATION_STATUS_ACTIVE, MIGRATION_STATUS_PRE_SWITCHOVER);
    while (!qatomic_read(&s->pause_posted) && !qatomic_read(&s->shutdown) &&
           qatomic_read(&s->state) == MIGRATION_STATUS_PRE_SWITCHOVER) {
        sleep_ms(TRANSFER_STEP_MS);
    }
    migrate_set_state(&s->state, MIGRATION_STATUS_PRE_SWITCHOVER, MIGRATION_STATUS_DEVICE);
    return MIGRATION_STATUS_DEVICE;
}

/* ------------------------------------------------------------------ */
/* The migration thread */

static void update_ram_counters(int64_t pages_done, int64_t total_pages, int64_t elapsed_ms)
{
    /* Half the guest is zero pages, like an idle guest; they cost no payload. */
    int64_t duplicate = pages_done / 2;
    int64_t normal = pages_done - duplicate;
    int64_t transferred = normal * PAGE_SIZE;
    int64_t remaining = (total_pages - pages_done) * PAGE_SIZE;

    qatomic_set(&ram_counters.duplicate, duplicate);
    qatomic_set(&ram_counters.normal, normal);
    qatomic_set(&ram_counters.normal_bytes, normal * PAGE_SIZE);
    qatomic_set(&ram_counters.transferred, transferred);
    qatomic_set(&ram_counters.remaining, remaining);
    if (elapsed_ms > 0) {
        MigrationState *s = migrate_get_current();
        double mbps = (double)transferred * 8.0 / 1e6 / ((double)elapsed_ms / 1000.0);
        __atomic_store(&s->mbps, &mbps, __ATOMIC_RELAXED);
        qatomic_set(&ram_counters.pages_per_second, pages_done * 1000 / elapsed_ms);
        int64_t bytes_per_ms = transferred / elapsed_ms;
        if (bytes_per_ms > 0) {
            qatomic_set(&s->expected_downtime, remaining / bytes_per_ms);
        }
    }
}

static void *migration_thread(void *opaque)
{
    MigrationState *s = opaque;
    int64_t total_pages = (int64_t)opt_ram_mb * 1024 * 1024 / PAGE_SIZE;
    int64_t setup_start = now_ms();

    /* Named here, before any probe can see this thread unnamed. */
    pthread_setname_np(pthread_self(), "live_migration");

    /* Stands for qemu_savevm_state_setup(): the first dirty bitmap sync. */
    qatomic_set(&ram_counters.page_size, PAGE_SIZE);
    qatomic_set(&ram_counters.total, total_pages * PAGE_SIZE);
    qatomic_set(&ram_counters.remaining, total_pages * PAGE_SIZE);
    qatomic_set(&ram_counters.dirty_sync_count, 1);
    migration_connect(s);
    sleep_while_state(s, opt_setup_ms, MIGRATION_STATUS_SETUP);
    if (qatomic_read(&s->shutdown)) {
        migration_disconnect(s);
        return NULL;
    }
    qatomic_set(&s->setup_time, now_ms() - setup_start);

    /* Fails harmlessly when a cancel got in first, as in QEMU. */
    migrate_set_state(&s->state, MIGRATION_STATUS_SETUP, MIGRATION_STATUS_ACTIVE);

    int64_t transfer_start = now_ms();
    while (qatomic_read(&s->state) == MIGRATION_STATUS_ACTIVE && !qatomic_read(&s->shutdown)) {
        int64_t elapsed = now_ms() - transfer_start;
        int64_t pages_done = elapsed >= opt_transfer_ms
                                 ? total_pages
                                 : total_pages * elapsed / opt_transfer_ms;
        update_ram_counters(pages_done, total_pages, elapsed);
        if (!migration_send(s)) {
            /* The destination is gone: QEMU's migration_detect_error(). */
            migrate_set_state(&s->state, MIGRATION_STATUS_ACTIVE, MIGRATION_STATUS_FAILED);
            break;
        }
        if (pages_done >= total_pages) {
            break;
        }
        sleep_ms(TRANSFER_STEP_MS);
    }
    if (qatomic_read(&s->shutdown)) {
        migration_disconnect(s);
        return NULL;
    }

    if (qatomic_read(&s->state) == MIGRATION_STATUS_ACTIVE) {
        int from = migration_maybe_pause(s);
        /* Stop-and-copy; the totals are set before COMPLETED is visible. */
        int64_t downtime_start = now_ms();
        sleep_ms(STOP_COPY_MS);
        qatomic_set(&ram_counters.dirty_sync_count, 2);
        qatomic_set(&s->downtime, now_ms() - downtime_start);
        qatomic_set(&s->total_time, now_ms() - s->start_time);
        bql_lock();
        migrate_set_state(&s->state, from, MIGRATION_STATUS_COMPLETED);
        bql_unlock();
    }
    migration_disconnect(s);
    if (qatomic_read(&s->state) == MIGRATION_STATUS_CANCELLING) {
        migrate_set_state(&s->state, MIGRATION_STATUS_CANCELLING, MIGRATION_STATUS_CANCELLED);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* query-migrate: the code under study */

static void populate_ram_info(MigrationInfo *info)
{
    MigrationState *s = migrate_get_current();
    MigrationStats *ram = calloc(1, sizeof(*ram));

    if (!ram) {
        abort();
    }
    info->has_ram = true;
    info->ram = ram;
    ram->transferred = qatomic_read(&ram_counters.transferred);
    ram->remaining = qatomic_read(&ram_counters.remaining);
    ram->total = qatomic_read(&ram_counters.total);
    ram->duplicate = qatomic_read(&ram_counters.duplicate);
    ram->normal = qatomic_read(&ram_counters.normal);
    ram->normal_bytes = qatomic_read(&ram_counters.normal_bytes);
    __atomic_load(&s->mbps, &ram->mbps, __ATOMIC_RELAXED);
    ram->dirty_sync_count = qatomic_read(&ram_counters.dirty_sync_count);
    ram->page_size = qatomic_read(&ram_counters.page_size);
    ram->pages_per_second = qatomic_read(&ram_counters.pages_per_second);
}

/*
 * Shaped like QEMU 6.2's fill_source_migration_info(), minus blockers,
 * disk, vfio and xbzrle.
 *
 * Why the state goes through a local even in the unpatched build: QEMU 6.2
 * writes `switch (s->state)`, which at -O0 loads s->state exactly once,
 * into a register, before the branch; the local is that same single load,
 * given a name and a line of its own. That is what makes the read probe
 * possible: a breakpoint on the switch line (the read marker) is hit after
 * the load has happened and before anything is filled in, and the
 * expression `state` is the value the switch is about to use. With
 * `switch (s->state)` a breakpoint on that line would stop before the load
 * and could only guess the value. The bug is unchanged: the unpatched build
 * still reads s->state a second time for the status.
 *
 * The publish probe is the line after the status store, so `info->status`
 * there is what the reply will say.
 */
/*
 * As in QEMU (4.2 up to at least 10.2), the time fields are chosen by
 * reading s->state again, not from the value the switch used: a move to
 * COMPLETED between the switch and here gives an ACTIVE reply with
 * COMPLETED's fields (downtime, no expected-downtime). Both builds have it;
 * upstream 552de79b did not touch it.
 */
static void populate_time_info(MigrationInfo *info, MigrationState *s)
{
    info->has_status = true;
    info->has_setup_time = true;
    info->setup_time = qatomic_read(&s->setup_time);
    if (qatomic_read(&s->state) == MIGRATION_STATUS_COMPLETED) {
        info->has_total_time = true;
        info->total_time = qatomic_read(&s->total_time);
        info->has_downtime = true;
        info->downtime = qatomic_read(&s->downtime);
    } else {
        info->has_total_time = true;
        info->total_time = now_ms() - s->start_time;
        info->has_expected_downtime = true;
        info->expected_downtime = qatomic_read(&s->expected_downtime);
    }
}

static __attribute__((noinline)) void fill_source_migration_info(MigrationInfo *info)
{
    MigrationState *s = migrate_get_current();
    int state = qatomic_read(&s->state);

    switch (state) { /* migrace:read */
    case MIGRATION_STATUS_NONE:
        /* no migration has happened ever */
        return;
    case MIGRATION_STATUS_SETUP:
        info->has_status = true;
        break;
    case MIGRATION_STATUS_ACTIVE:
    case MIGRATION_STATUS_CANCELLING:
    case MIGRATION_STATUS_PRE_SWITCHOVER:
    case MIGRATION_STATUS_DEVICE:
        populate_time_info(info, s);
        populate_ram_info(info);
        break;
    case MIGRATION_STATUS_COMPLETED:
        populate_time_info(info, s);
        populate_ram_info(info);
        break;
    case MIGRATION_STATUS_CANCELLED:
        info->has_status = true;
        break;
    case MIGRATION_STATUS_FAILED:
        info->has_status = true;
        if (s->error_desc[0]) {
            info->has_error_desc = true;
            info->error_desc = strdup(s->error_desc);
        }
        break;
    default:
        info->has_status = true;
        break;
    }
#ifdef READ_STATE_ONCE
    info->status = state;
#else
    /* The second read: LP#1994002 when the state moved since the switch. */
    info->status = s->state;
#endif
    info->has_status = true; /* migrace:publish */
}

__attribute__((noinline)) MigrationInfo *qmp_query_migrate(void)
{
    MigrationInfo *info = calloc(1, sizeof(*info));

    if (!info) {
        abort();
    }
    fill_source_migration_info(info);
    return info;
}

static void qapi_free_MigrationInfo(MigrationInfo *info)
{
    if (info) {
        free(info->ram);
        free(info->error_desc);
        free(info);
    }
}

/* ------------------------------------------------------------------ */
/* Growing string buffer for replies */

typedef struct StrBuf {
    char *buf;
    size_t len;
    size_t cap;
} StrBuf;

static void sb_reserve(StrBuf *sb, size_t extra)
{
    if (sb->len + extra + 1 <= sb->cap) {
        return;
    }
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + extra + 1) {
        cap *= 2;
    }
    char *p = realloc(sb->buf, cap);
    if (!p) {
        abort();
    }
    sb->buf = p;
    sb->cap = cap;
}

static void sb_putn(StrBuf *sb, const char *s, size_t n)
{
    sb_reserve(sb, n);
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

static void sb_puts(StrBuf *sb, const char *s)
{
    sb_putn(sb, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) sb_printf(StrBuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char probe[1];
    int n = vsnprintf(probe, sizeof(probe), fmt, ap); /* measures the output */
    va_end(ap);
    if (n < 0) {
        abort();
    }
    sb_reserve(sb, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

static int utf8_len(const unsigned char *p, const unsigned char *end);

/*
 * A JSON string literal. Error messages quote raw request bytes, which may
 * be invalid UTF-8 or cut mid-character: those become U+FFFD so the reply
 * is always valid JSON.
 */
static void sb_json_string(StrBuf *sb, const char *s)
{
    const unsigned char *end = (const unsigned char *)s + strlen(s);
    sb_putn(sb, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x80) {
            int n = utf8_len(p, end);
            if (n == 0) {
                sb_puts(sb, "\\ufffd");
            } else {
                sb_putn(sb, (const char *)p, (size_t)n);
                p += n - 1;
            }
            continue;
        }
        switch (*p) {
        case '"': sb_puts(sb, "\\\""); break;
        case '\\': sb_puts(sb, "\\\\"); break;
        case '\n': sb_puts(sb, "\\n"); break;
        case '\r': sb_puts(sb, "\\r"); break;
        case '\t': sb_puts(sb, "\\t"); break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                sb_printf(sb, "\\u%04x", *p);
            } else {
                sb_putn(sb, (const char *)p, 1);
            }
        }
    }
    sb_putn(sb, "\"", 1);
}

static void sb_free(StrBuf *sb)
{
    free(sb->buf);
    sb->buf = NULL;
    sb->len = sb->cap = 0;
}

/* An optional integer member of a reply body, when it is there; `sep` goes before it. */
static void sb_int_member(StrBuf *sb, const char **sep, bool has, const char *name, int64_t value)
{
    if (has) {
        sb_printf(sb, "%s\"%s\": %" PRId64, *sep, name, value);
        *sep = ", ";
    }
}

/* The reply body of query-migrate, with QEMU's member names. */
static void migration_info_to_json(StrBuf *sb, const MigrationInfo *info)
{
    const char *sep = "";

    sb_puts(sb, "{");
    if (info->has_status) {
        sb_puts(sb, "\"status\": ");
        sb_json_string(sb, MigrationStatus_str(info->status));
        sep = ", ";
    }
    if (info->has_ram) {
        const MigrationStats *r = info->ram;
        sb_printf(sb,
                  "%s\"ram\": {\"transferred\": %" PRId64 ", \"remaining\": %" PRId64
                  ", \"total\": %" PRId64 ", \"duplicate\": %" PRId64
                  ", \"normal\": %" PRId64 ", \"normal-bytes\": %" PRId64
                  ", \"mbps\": %.6f, \"dirty-sync-count\": %" PRId64
                  ", \"page-size\": %" PRId64 ", \"pages-per-second\": %" PRId64 "}",
                  sep, r->transferred, r->remaining, r->total, r->duplicate, r->normal,
                  r->normal_bytes, r->mbps, r->dirty_sync_count, r->page_size,
                  r->pages_per_second);
        sep = ", ";
    }
    sb_int_member(sb, &sep, info->has_total_time, "total-time", info->total_time);
    sb_int_member(sb, &sep, info->has_expected_downtime, "expected-downtime", info->expected_downtime);
    sb_int_member(sb, &sep, info->has_downtime, "downtime", info->downtime);
    sb_int_member(sb, &sep, info->has_setup_time, "setup-time", info->setup_time);
    if (info->has_error_desc) {
        sb_printf(sb, "%s\"error-desc\": ", sep);
        sb_json_string(sb, info->error_desc);
    }
    sb_puts(sb, "}");
}

/* ------------------------------------------------------------------ */
/* A small JSON scanner: validates a request, then finds members by span */

#define JSON_MAX_DEPTH 64

typedef struct JScan {
    const char *p;
    const char *end;
    char err[160];
} JScan;

static bool __attribute__((format(printf, 2, 3))) js_fail(JScan *j, const char *fmt, ...)
{
    if (!j->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->err, sizeof(j->err), fmt, ap);
        va_end(ap);
    }
    return false;
}

/*
 * The bad token to quote in an error, as QEMU does ("invalid keyword
 * 'garbage'"): up to the next delimiter, never past the request's end.
 */
static int js_token(const JScan *j)
{
    int n = 0;
    while (j->p + n < j->end && n < 32 && !strchr(" \t\r\n,:{}[]\"", j->p[n])) {
        n++;
    }
    return n ? n : (j->p < j->end ? 1 : 0);
}

static void js_ws(JScan *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) {
        j->p++;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool js_hex4(JScan *j, unsigned *out)
{
    if (j->end - j->p < 4) {
        return js_fail(j, "truncated \\u escape");
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->p[i]);
        if (h < 0) {
            return js_fail(j, "invalid \\u escape");
        }
        v = v * 16 + (unsigned)h;
    }
    j->p += 4;
    *out = v;
    return true;
}

/* Length of a valid UTF-8 sequence at p, or 0. Rejects overlongs and surrogates. */
static int utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    int n;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; min = 0x10000; }
    else return 0;
    if (end - p < n) return 0;
    unsigned cp = c & (0x3f >> (n - 1));
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

static void put_utf8(char *out, size_t cap, size_t *len, bool *truncated, unsigned cp)
{
    char tmp[4];
    size_t n;
    if (cp < 0x80) { tmp[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { tmp[0] = (char)(0xc0 | (cp >> 6)); tmp[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else if (cp < 0x10000) {
        tmp[0] = (char)(0xe0 | (cp >> 12)); tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[2] = (char)(0x80 | (cp & 0x3f)); n = 3;
    } else {
        tmp[0] = (char)(0xf0 | (cp >> 18)); tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); tmp[3] = (char)(0x80 | (cp & 0x3f)); n = 4;
    }
    if (!out) return;
    if (*len + n + 1 > cap) { *truncated = true; return; }
    memcpy(out + *len, tmp, n);
    *len += n;
    out[*len] = '\0';
}

/*
 * A string at j->p (which is '"'). Decoded into out (NUL-terminated,
 * cut at cap with *truncated set) when out is not NULL.
 */
static bool js_string(JScan *j, char *out, size_t cap, bool *truncated)
{
    size_t len = 0;
    bool trunc = false;
    if (out && cap) out[0] = '\0';
    j->p++; /* opening quote */
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            if (truncated) *truncated = trunc;
            return true;
        }
        if (c < 0x20) {
            return js_fail(j, "control character in string");
        }
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end) break;
            char e = *j->p++;
            unsigned cp;
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (!js_hex4(j, &cp)) return false;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo;
                    if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') {
                        return js_fail(j, "lone surrogate in \\u escape");
                    }
                    j->p += 2;
                    if (!js_hex4(j, &lo)) return false;
                    if (lo < 0xdc00 || lo > 0xdfff) {
                        return js_fail(j, "lone surrogate in \\u escape");
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    return js_fail(j, "lone surrogate in \\u escape");
                } else if (cp == 0) {
                    /* Like QEMU: a NUL would cut C strings short. */
                    return js_fail(j, "\\u0000 is not supported");
                }
                break;
            default:
                return js_fail(j, "invalid escape '\\%c'", e);
            }
            put_utf8(out, cap, &len, &trunc, cp);
            continue;
        }
        int n = utf8_len((const unsigned char *)j->p, (const unsigned char *)j->end);
        if (n == 0) {
            return js_fail(j, "invalid UTF-8 in string");
        }
        if (out) {
            if (len + (size_t)n + 1 > cap) {
                trunc = true;
            } else {
                memcpy(out + len, j->p, (size_t)n);
                len += (size_t)n;
                out[len] = '\0';
            }
        }
        j->p += n;
    }
    return js_fail(j, "unterminated string");
}

static bool js_number(JScan *j)
{
    const char *start = j->p;
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p >= j->end) return js_fail(j, "invalid number");
    if (*j->p == '0') {
        j->p++;
    } else if (*j->p >= '1' && *j->p <= '9') {
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    } else {
        return js_fail(j, "invalid number '%.*s'", js_token(j), start);
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return js_fail(j, "invalid number");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return js_fail(j, "invalid number");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    return true;
}

static bool js_value(JScan *j, int depth);

/* Past a '[' or '{': true, and past the closing one, when the container is empty. */
static bool js_open_empty(JScan *j, char close)
{
    j->p++;
    js_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return true;
    }
    return false;
}

/* After an element of an array or object: 1 past its end, 0 past a ',' (another element follows), -1 on an error. */
static int js_after_element(JScan *j, char close, const char *what)
{
    js_ws(j);
    if (j->p >= j->end) {
        js_fail(j, "unterminated %s", what);
        return -1;
    }
    if (*j->p == close) {
        j->p++;
        return 1;
    }
    if (*j->p != ',') {
        js_fail(j, "expected ',' or '%c' in %s", close, what);
        return -1;
    }
    j->p++;
    return 0;
}

static bool js_array(JScan *j, int depth)
{
    if (js_open_empty(j, ']')) return true;
    for (;;) {
        if (!js_value(j, depth + 1)) return false;
        int next = js_after_element(j, ']', "array");
        if (next != 0) return next > 0;
    }
}

static bool js_object(JScan *j, int depth)
{
    if (js_open_empty(j, '}')) return true;
    for (;;) {
        js_ws(j);
        if (j->p >= j->end || *j->p != '"') return js_fail(j, "expected a string key in object");
        if (!js_string(j, NULL, 0, NULL)) return false;
        js_ws(j);
        if (j->p >= j->end || *j->p != ':') return js_fail(j, "expected ':' after key");
        j->p++;
        if (!js_value(j, depth + 1)) return false;
        int next = js_after_element(j, '}', "object");
        if (next != 0) return next > 0;
    }
}

static bool js_literal(JScan *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) {
        return js_fail(j, "invalid keyword '%.*s'", js_token(j), j->p);
    }
    j->p += n;
    return true;
}

static bool js_value(JScan *j, int depth)
{
    if (depth > JSON_MAX_DEPTH) {
        return js_fail(j, "nesting too deep");
    }
    js_ws(j);
    if (j->p >= j->end) return js_fail(j, "unexpected end of input");
    switch (*j->p) {
    case '{': return js_object(j, depth);
    case '[': return js_array(j, depth);
    case '"': return js_string(j, NULL, 0, NULL);
    case 't': return js_literal(j, "true");
    case 'f': return js_literal(j, "false");
    case 'n': return js_literal(j, "null");
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return js_number(j);
        return js_fail(j, "invalid keyword '%.*s'", js_token(j), j->p);
    }
}

/* One member of an already validated object. */
typedef struct JMember {
    char key[64];
    bool key_truncated;
    const char *value;     /* first byte of the value */
    const char *value_end; /* one past its last byte */
} JMember;

#define MAX_MEMBERS 16

/* Members of a validated object; -1 when there are more than max. */
static int js_members(const char *obj, const char *end, JMember *out, int max)
{
    JScan j = { obj, end, "" };
    int n = 0;
    js_ws(&j);
    j.p++; /* '{' */
    js_ws(&j);
    if (*j.p == '}') return 0;
    for (;;) {
        if (n == max) return -1;
        JMember *m = &out[n++];
        js_ws(&j);
        js_string(&j, m->key, sizeof(m->key), &m->key_truncated);
        js_ws(&j);
        j.p++; /* ':' */
        js_ws(&j);
        m->value = j.p;
        js_value(&j, 0);
        m->value_end = j.p;
        js_ws(&j);
        if (*j.p == '}') return n;
        j.p++; /* ',' */
    }
}

static char js_type(const JMember *m)
{
    switch (m->value[0]) {
    case '{': return 'o';
    case '[': return 'a';
    case '"': return 's';
    case 't': case 'f': return 'b';
    case 'n': return 'n';
    default: return 'd';
    }
}

/* Decode a string member's value; false if it did not fit. */
static bool js_member_string(const JMember *m, char *out, size_t cap)
{
    JScan j = { m->value, m->value_end, "" };
    bool truncated = false;
    js_string(&j, out, cap, &truncated);
    return !truncated;
}

/* ------------------------------------------------------------------ */
/* The QMP server */

#define IN_CAP 65536

typedef struct Client {
    int fd;
    bool negotiated;
    bool discarding; /* dropping the rest of an over-long line */
    bool dead;
    size_t in_len;
    char in[IN_CAP];
} Client;

static Client client = { .fd = -1 };
static bool quit_requested;

static void client_send(Client *c, const char *buf, size_t len)
{
    while (len > 0 && !c->dead) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            /* Gone, or not reading for SO_SNDTIMEO: drop it. */
            c->dead = true;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* QEMU ends every QMP line with CRLF; clients must cope, so do we. */
static void client_send_line(Client *c, StrBuf *sb)
{
    sb_puts(sb, "\r\n");
    client_send(c, sb->buf, sb->len);
}

static void flush_events(void)
{
    PendingEvent batch[EVENT_RING];
    unsigned n = 0;

    pthread_mutex_lock(&event_lock);
    while (event_count > 0) {
        batch[n++] = event_ring[event_head];
        event_head = (event_head + 1) % EVENT_RING;
        event_count--;
    }
    pthread_mutex_unlock(&event_lock);

    if (client.fd < 0 || !client.negotiated) {
        return; /* QEMU drops events nobody can receive */
    }
    for (unsigned i = 0; i < n; i++) {
        StrBuf sb = { 0 };
        sb_printf(&sb, "{\"timestamp\": {\"seconds\": %" PRId64 ", \"microseconds\": %" PRId64
                       "}, \"event\": \"MIGRATION\", \"data\": {\"status\": ",
                  batch[i].seconds, batch[i].microseconds);
        sb_json_string(&sb, MigrationStatus_str(batch[i].status));
        sb_puts(&sb, "}}");
        client_send_line(&client, &sb);
        sb_free(&sb);
    }
}

typedef struct Span {
    const char *p;
    size_t len;
} Span;

/* A response's end: the request's id when it had one, the closing brace; then the line goes out. */
static void reply_send(Client *c, StrBuf *sb, const Span *id)
{
    if (id && id->p) {
        sb_puts(sb, ", \"id\": ");
        sb_putn(sb, id->p, id->len);
    }
    sb_puts(sb, "}");
    client_send_line(c, sb);
    sb_free(sb);
}

static void reply_return(Client *c, const char *ret_json, const Span *id)
{
    StrBuf sb = { 0 };
    /* Events raised while the command ran go first, as in QEMU. */
    flush_events();
    sb_puts(&sb, "{\"return\": ");
    sb_puts(&sb, ret_json);
    reply_send(c, &sb, id);
}

static void __attribute__((format(printf, 4, 5)))
reply_error(Client *c, const Span *id, const char *cls, const char *fmt, ...)
{
    char desc[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(desc, sizeof(desc), fmt, ap);
    va_end(ap);

    StrBuf sb = { 0 };
    flush_events();
    sb_puts(&sb, "{\"error\": {\"class\": ");
    sb_json_string(&sb, cls);
    sb_puts(&sb, ", \"desc\": ");
    sb_json_string(&sb, desc);
    sb_puts(&sb, "}");
    reply_send(c, &sb, id);
}

static void send_greeting(Client *c)
{
    StrBuf sb = { 0 };
    sb_puts(&sb, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 6}, "
                 "\"package\": \"minimig\"}, \"capabilities\": []}}");
    client_send_line(c, &sb);
    sb_free(&sb);
}

/* Checks one command's arguments against what it accepts. */
typedef struct ArgSpec {
    const char *name;
    char type; /* 's' string, 'b' bool, 'a' array */
    bool required;
} ArgSpec;

static const char *type_name(char t)
{
    switch (t) {
    case 's': return "string";
    case 'b': return "boolean";
    case 'a': return "array";
    default: return "value";
    }
}

/*
 * Validates args (NULL when absent) against spec; on success fills
 * found[i] with the member for spec[i] (or NULL). QEMU's wording.
 */
static bool check_args(Client *c, const Span *id, const JMember *args, int nargs,
                       const ArgSpec *spec, int nspec, const JMember **found)
{
    for (int i = 0; i < nspec; i++) {
        found[i] = NULL;
    }
    for (int a = 0; a < nargs; a++) {
        int hit = -1;
        for (int i = 0; i < nspec; i++) {
            if (!args[a].key_truncated && strcmp(args[a].key, spec[i].name) == 0) {
                hit = i;
            }
        }
        if (hit < 0) {
            reply_error(c, id, "GenericError", "Parameter '%s%s' is unexpected", args[a].key,
                        args[a].key_truncated ? "..." : "");
            return false;
        }
        if (js_type(&args[a]) != spec[hit].type) {
            reply_error(c, id, "GenericError", "Invalid parameter type for '%s', expected: %s",
                        spec[hit].name, type_name(spec[hit].type));
            return false;
        }
        found[hit] = &args[a];
    }
    for (int i = 0; i < nspec; i++) {
        if (spec[i].required && !found[i]) {
            reply_error(c, id, "GenericError", "Parameter '%s' is missing", spec[i].name);
            return false;
        }
    }
    return true;
}

/* tcp:A.B.C.D:PORT, as QEMU spells a socket migration; false (port 0) for anything else. */
static bool parse_migrate_uri(const char *uri, struct sockaddr_in *out)
{
    char host[64];
    const char *colon;
    char *end;
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    if (strncmp(uri, "tcp:", 4) != 0 || !(colon = strrchr(uri + 4, ':')) ||
        (size_t)(colon - (uri + 4)) >= sizeof(host)) {
        return false;
    }
    memcpy(host, uri + 4, (size_t)(colon - (uri + 4)));
    host[colon - (uri + 4)] = '\0';
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &out->sin_addr) != 1) {
        out->sin_port = 0;
        return false;
    }
    out->sin_port = htons((uint16_t)port);
    return true;
}

static void qmp_migrate(Client *c, const Span *id, const JMember *uri_member)
{
    MigrationState *s = migrate_get_current();
    int state = qatomic_read(&s->state);
    char uri[128];

    if (migration_is_running(state)) {
        reply_error(c, id, "GenericError", "There's a migration process in progress");
        return;
    }
    if (!js_member_string(uri_member, uri, sizeof(uri)) || !parse_migrate_uri(uri, &s->dst)) {
        s->dst.sin_port = 0;
    }
    if (s->thread_started) {
        /* The previous migration thread has finished its last transition. */
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
    /* migrate_init(): start from NONE so the first transition is NONE -> SETUP. */
    memset(&ram_counters, 0, sizeof(ram_counters));
    qatomic_set(&s->setup_time, 0);
    qatomic_set(&s->total_time, 0);
    qatomic_set(&s->downtime, 0);
    qatomic_set(&s->expected_downtime, DEFAULT_DOWNTIME_LIMIT_MS);
    s->error_desc[0] = '\0';
    s->to_dst_fd = -1;
    double zero = 0;
    __atomic_store(&s->mbps, &zero, __ATOMIC_RELAXED);
    s->start_time = now_ms();
    qatomic_set(&s->state, MIGRATION_STATUS_NONE);
    migrate_set_state(&s->state, MIGRATION_STATUS_NONE, MIGRATION_STATUS_SETUP);

    sigset_t all, old;
    sigfillset(&all);
    /* Signals go to the main thread, whose poll loop handles them. */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&s->thread, NULL, migration_thread, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        migrate_set_state(&s->state, MIGRATION_STATUS_SETUP, MIGRATION_STATUS_FAILED);
        reply_error(c, id, "GenericError", "Failed to start the migration thread: %s",
                    strerror(err));
        return;
    }
    s->thread_started = true;
    reply_return(c, "{}", id);
}

static void qmp_migrate_cancel(Client *c, const Span *id)
{
    MigrationState *s = migrate_get_current();
    int old_state;

    /* Like migrate_fd_cancel(): retry until the CAS wins or there is nothing to cancel. */
    do {
        old_state = qatomic_read(&s->state);
        if (old_state != MIGRATION_STATUS_SETUP && old_state != MIGRATION_STATUS_ACTIVE) {
            break;
        }
        migrate_set_state(&s->state, old_state, MIGRATION_STATUS_CANCELLING);
    } while (qatomic_read(&s->state) != MIGRATION_STATUS_CANCELLING);
    reply_return(c, "{}", id);
}

/* qmp_migrate_continue(): only from the state the caller names, as in QEMU. */
static void qmp_migrate_continue(Client *c, const Span *id, const JMember *state_member)
{
    MigrationState *s = migrate_get_current();
    char want[32];
    int state = qatomic_read(&s->state);

    if (!js_member_string(state_member, want, sizeof(want)) ||
        strcmp(want, MigrationStatus_str(state)) != 0) {
        reply_error(c, id, "GenericError", "Migration not in expected state: %s",
                    MigrationStatus_str(state));
        return;
    }
    qatomic_set(&s->pause_posted, 1);
    reply_return(c, "{}", id);
}

static void qmp_query_migrate_capabilities(Client *c, const Span *id)
{
    StrBuf sb = { 0 };
    sb_printf(&sb, "[{\"state\": true, \"capability\": \"events\"}, "
                   "{\"state\": %s, \"capability\": \"pause-before-switchover\"}]",
              cap_pause_before_switchover ? "true" : "false");
    reply_return(c, sb.buf, id);
    sb_free(&sb);
}

/*
 * migrate-set-capabilities {"capabilities": [{"capability": C, "state": B}]}:
 * checked in full before anything changes, with QEMU's wording for a
 * capability it does not have (postcopy-ram, here).
 */
static void qmp_migrate_set_capabilities(Client *c, const Span *id, const JMember *list)
{
    bool pause = cap_pause_before_switchover;
    JScan a = { list->value + 1, list->value_end, "" };

    if (migration_is_running(qatomic_read(&migrate_get_current()->state))) {
        reply_error(c, id, "GenericError", "There's a migration process in progress");
        return;
    }
    for (;;) {
        js_ws(&a);
        if (*a.p == ']') {
            break;
        }
        if (*a.p != '{') {
            reply_error(c, id, "GenericError", "Invalid parameter type for 'capabilities[0]', expected: object");
            return;
        }
        const char *start = a.p;
        js_value(&a, 0);
        JMember m[MAX_MEMBERS];
        int n = js_members(start, a.p, m, MAX_MEMBERS);
        char name[64] = "";
        int state = -1;
        for (int i = 0; i < n; i++) {
            if (!strcmp(m[i].key, "capability") && js_type(&m[i]) == 's') {
                js_member_string(&m[i], name, sizeof(name));
            } else if (!strcmp(m[i].key, "state") && js_type(&m[i]) == 'b') {
                state = m[i].value[0] == 't';
            } else {
                reply_error(c, id, "GenericError", "Parameter '%s' is unexpected", m[i].key);
                return;
            }
        }
        if (state < 0) {
            reply_error(c, id, "GenericError", "Parameter 'state' is missing");
            return;
        }
        if (!strcmp(name, "pause-before-switchover")) {
            pause = state;
        } else if (strcmp(name, "events") != 0 || !state) {
            reply_error(c, id, "GenericError", "Parameter 'capability' does not accept value '%s'", name);
            return;
        }
        js_ws(&a);
        if (*a.p == ',') {
            a.p++;
        }
    }
    cap_pause_before_switchover = pause;
    reply_return(c, "{}", id);
}

static void qmp_query_migrate_reply(Client *c, const Span *id)
{
    MigrationInfo *info = qmp_query_migrate();
    StrBuf body = { 0 };
    migration_info_to_json(&body, info);
    qapi_free_MigrationInfo(info);
    reply_return(c, body.buf, id);
    sb_free(&body);
}

/*
 * The commands after capabilities negotiation, found by name as QEMU's
 * qmp_dispatch() finds them in its command table. check_args() checks the
 * arguments against `args` first; a command takes none or the first one
 * (found[0]: migrate's uri, migrate-continue's state, the capabilities).
 */
typedef struct QmpCommand {
    const char *name;
    const ArgSpec *args;
    int nargs;
    void (*fn)(Client *c, const Span *id);
    void (*fn_arg)(Client *c, const Span *id, const JMember *arg);
} QmpCommand;

#define MAX_COMMAND_ARGS 5

static void qmp_quit(Client *c, const Span *id)
{
    reply_return(c, "{}", id);
    quit_requested = true;
}

static const ArgSpec migrate_args[MAX_COMMAND_ARGS] = {
    { "uri", 's', true }, { "blk", 'b', false }, { "inc", 'b', false },
    { "detach", 'b', false }, { "resume", 'b', false },
};
static const ArgSpec migrate_continue_args[] = { { "state", 's', true } };
static const ArgSpec migrate_set_capabilities_args[] = { { "capabilities", 'a', true } };

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const QmpCommand qmp_commands[] = {
    { "migrate", migrate_args, COUNT_OF(migrate_args), NULL, qmp_migrate },
    { "query-migrate", NULL, 0, qmp_query_migrate_reply, NULL },
    { "migrate-continue", migrate_continue_args, COUNT_OF(migrate_continue_args), NULL, qmp_migrate_continue },
    { "query-migrate-capabilities", NULL, 0, qmp_query_migrate_capabilities, NULL },
    { "migrate-set-capabilities", migrate_set_capabilities_args, COUNT_OF(migrate_set_capabilities_args),
      NULL, qmp_migrate_set_capabilities },
    { "migrate_cancel", NULL, 0, qmp_migrate_cancel, NULL },
    { "quit", NULL, 0, qmp_quit, NULL },
};

static const QmpCommand *qmp_find_command(const char *name)
{
    for (int i = 0; i < COUNT_OF(qmp_commands); i++) {
        if (strcmp(qmp_commands[i].name, name) == 0) {
            return &qmp_commands[i];
        }
    }
    return NULL;
}

static void handle_request(Client *c, const char *line, size_t len)
{
    JScan j = { line, line + len, "" };

    if (!js_value(&j, 0)) {
        reply_error(c, NULL, "GenericError", "JSON parse error, %s", j.err);
        return;
    }
    js_ws(&j);
    if (j.p != j.end) {
        reply_error(c, NULL, "GenericError", "JSON parse error, trailing data after the request");
        return;
    }
    const char *start = line;
    while (*start == ' ' || *start == '\t') start++;
    if (*start != '{') {
        reply_error(c, NULL, "GenericError", "QMP input must be a JSON object");
        return;
    }

    JMember top[MAX_MEMBERS];
    int ntop = js_members(start, line + len, top, MAX_MEMBERS);
    Span id = { NULL, 0 };
    const JMember *execute = NULL, *arguments = NULL;

    if (ntop < 0) {
        reply_error(c, NULL, "GenericError", "QMP input has too many members");
        return;
    }
    /* id first, so every later error can carry it. */
    for (int i = 0; i < ntop; i++) {
        if (!top[i].key_truncated && strcmp(top[i].key, "id") == 0) {
            id.p = top[i].value;
            id.len = (size_t)(top[i].value_end - top[i].value);
        }
    }
    for (int i = 0; i < ntop; i++) {
        const JMember *m = &top[i];
        if (!m->key_truncated && strcmp(m->key, "execute") == 0) {
            if (js_type(m) != 's') {
                reply_error(c, &id, "GenericError", "QMP input member 'execute' must be a string");
                return;
            }
            execute = m;
        } else if (!m->key_truncated && strcmp(m->key, "arguments") == 0) {
            if (js_type(m) != 'o') {
                reply_error(c, &id, "GenericError",
                            "QMP input member 'arguments' must be an object");
                return;
            }
            arguments = m;
        } else if (m->key_truncated || strcmp(m->key, "id") != 0) {
            reply_error(c, &id, "GenericError", "QMP input member '%s%s' is unexpected", m->key,
                        m->key_truncated ? "..." : "");
            return;
        }
    }
    if (!execute) {
        reply_error(c, &id, "GenericError", "QMP input lacks member 'execute'");
        return;
    }

    char command[64];
    bool fits = js_member_string(execute, command, sizeof(command));
    if (!fits) {
        reply_error(c, &id, "CommandNotFound", "The command %s... has not been found", command);
        return;
    }

    JMember args[MAX_MEMBERS];
    int nargs = 0;
    if (arguments) {
        nargs = js_members(arguments->value, arguments->value_end, args, MAX_MEMBERS);
        if (nargs < 0) {
            reply_error(c, &id, "GenericError", "Too many parameters");
            return;
        }
    }

    if (!c->negotiated) {
        if (strcmp(command, "qmp_capabilities") != 0) {
            reply_error(c, &id, "CommandNotFound",
                        "Expecting capabilities negotiation with 'qmp_capabilities'");
            return;
        }
        static const ArgSpec spec[] = { { "enable", 'a', false } };
        const JMember *found[1];
        if (!check_args(c, &id, args, nargs, spec, 1, found)) {
            return;
        }
        if (found[0]) {
            JScan a = { found[0]->value + 1, found[0]->value_end, "" };
            js_ws(&a);
            if (*a.p != ']') {
                char cap[64] = "?";
                if (*a.p == '"') {
                    js_string(&a, cap, sizeof(cap), NULL);
                }
                reply_error(c, &id, "GenericError", "Capability '%s' not available", cap);
                return;
            }
        }
        c->negotiated = true;
        reply_return(c, "{}", &id);
        return;
    }

    if (strcmp(command, "qmp_capabilities") == 0) {
        reply_error(c, &id, "CommandNotFound",
                    "Capabilities negotiation is already complete, command ignored");
        return;
    }
    const QmpCommand *cmd = qmp_find_command(command);
    if (!cmd) {
        reply_error(c, &id, "CommandNotFound", "The command %s has not been found", command);
        return;
    }
    const JMember *found[MAX_COMMAND_ARGS];
    if (!check_args(c, &id, args, nargs, cmd->args, cmd->nargs, found)) {
        return;
    }
    if (cmd->fn_arg) {
        cmd->fn_arg(c, &id, found[0]);
    } else {
        cmd->fn(c, &id);
    }
}

static void handle_line(Client *c, char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) i++;
    if (i == len) {
        return; /* blank lines are not requests */
    }
    bql_lock();
    handle_request(c, line, len);
    bql_unlock();
}

static void client_close(Client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->negotiated = false;
    c->discarding = false;
    c->dead = false;
    c->in_len = 0;
}

static void client_readable(Client *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }
    if (n <= 0) {
        c->dead = true;
        return;
    }
    c->in_len += (size_t)n;

    size_t start = 0;
    for (size_t i = 0; i < c->in_len && !c->dead && !quit_requested; i++) {
        if (c->in[i] != '\n') {
            continue;
        }
        if (c->discarding) {
            c->discarding = false;
        } else {
            handle_line(c, c->in + start, i - start);
        }
        start = i + 1;
    }
    if (quit_requested) {
        return;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len == IN_CAP) {
        if (!c->discarding) {
            reply_error(c, NULL, "GenericError", "JSON parse error, request longer than %d bytes",
                        IN_CAP);
        }
        c->discarding = true;
        c->in_len = 0;
    } else if (c->discarding) {
        c->in_len = 0;
    }
}

/* ------------------------------------------------------------------ */
/* Stress mode: probe hits as fast as the code can make them */

/*
 * --stress N: no monitor, no migration thread. The main thread runs N
 * rounds of what a recording is hit by most, each making four probe hits:
 * migrate_set_state(setup -> active) (the transition probe) and one
 * qmp_query_migrate() (the query probe, then the read and the publish in
 * fill_source_migration_info). The state goes back to setup between
 * rounds by a plain store, which no probe sees. The loop's own time is
 * printed, so a benchmark can tell what a recorder costs per hit.
 */
static long opt_stress_rounds = -1;

static int stress_loop(long rounds)
{
    MigrationState *s = migrate_get_current();
    struct timespec t0, t1, c0, c1;

    s->start_time = now_ms();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (long i = 0; i < rounds; i++) {
        qatomic_set(&s->state, MIGRATION_STATUS_SETUP);
        migrate_set_state(&s->state, MIGRATION_STATUS_SETUP, MIGRATION_STATUS_ACTIVE);
        qapi_free_MigrationInfo(qmp_query_migrate());
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* CPU time includes the kernel's uprobe handling; on a shared machine it is what waiting for a CPU does not inflate. */
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    printf("minimig: stress rounds=%ld hits=%ld seconds=%.6f cpu_seconds=%.6f\n", rounds, rounds * 4, seconds, cpu);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Socket, signals, options, main */

static ino_t socket_ino;

static int listen_unix(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct stat st;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "minimig: socket path too long (max %zu bytes): %s\n",
                sizeof(addr.sun_path) - 1, path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    /* A stale socket from a killed run would make bind fail; QEMU unlinks it too. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "minimig: socket: %s\n", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "minimig: cannot bind %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, 1) < 0) {
        fprintf(stderr, "minimig: listen %s: %s\n", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    if (lstat(path, &st) == 0) {
        socket_ino = st.st_ino;
    }
    return fd;
}

/* Remove the socket only if it is still ours (a later run may own the path). */
static void remove_socket(void)
{
    struct stat st;
    if (opt_qmp_path && lstat(opt_qmp_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_ino == socket_ino) {
        unlink(opt_qmp_path);
    }
}

static void on_signal(int sig)
{
    quit_signal = sig;
    wake_main_loop();
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: minimig -qmp unix:PATH,server,wait=off [-name NAME[,debug-threads=on]]\n"
            "               [--setup-ms N] [--transfer-ms N] [--ram-mb N] [--bql-completion]\n"
            "       minimig --stress N\n"
            "  -qmp unix:PATH,server,wait=off  QMP monitor on a unix socket (required)\n"
            "  -name NAME[,debug-threads=on]   accepted and ignored (QEMU compatibility)\n"
            "  --setup-ms N     time spent in SETUP before ACTIVE (default 50)\n"
            "  --transfer-ms N  time spent in ACTIVE before COMPLETED (default 200)\n"
            "  --ram-mb N       guest RAM size reported in query-migrate (default 128)\n"
            "  --bql-completion hold a big lock around ACTIVE -> COMPLETED, as QEMU 10 does\n"
            "  --stress N       no monitor: N rounds of migrate_set_state and query-migrate's\n"
            "                   read and publish (4 probe hits each), then exit\n");
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("minimig: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    usage(stderr);
    exit(2);
}

static long parse_count(const char *opt, const char *val, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < min || v > max) {
        usage_error("%s needs an integer from %ld to %ld, got '%s'", opt, min, max, val);
    }
    return v;
}

/* unix:PATH,server[=on],wait=off|nowait -- QEMU's spelling, listening only. */
static void parse_qmp(const char *spec)
{
    static char path[4096];
    bool server = false;

    if (strncmp(spec, "unix:", 5) != 0) {
        usage_error("-qmp supports only unix:PATH,server,wait=off, got '%s'", spec);
    }
    const char *p = spec + 5;
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (n == 0 || n >= sizeof(path)) {
        usage_error("-qmp needs a socket path, got '%s'", spec);
    }
    memcpy(path, p, n);
    path[n] = '\0';
    while (comma) {
        const char *opt = comma + 1;
        comma = strchr(opt, ',');
        size_t len = comma ? (size_t)(comma - opt) : strlen(opt);
        if ((len == 6 && !strncmp(opt, "server", 6)) || (len == 9 && !strncmp(opt, "server=on", 9))) {
            server = true;
        } else if ((len == 8 && !strncmp(opt, "wait=off", 8)) || (len == 6 && !strncmp(opt, "nowait", 6))) {
            /* minimig never waits for a client before running */
        } else {
            usage_error("unsupported -qmp option '%.*s'", (int)len, opt);
        }
    }
    if (!server) {
        usage_error("-qmp must be a server (unix:PATH,server,wait=off)");
    }
    opt_qmp_path = path;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        char name[32];
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;

        /* --opt=value as well as --opt value */
        if (eq && (size_t)(eq - a) < sizeof(name)) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            val = eq + 1;
            a = name;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--bql-completion")) {
            opt_bql_completion = true;
            continue;
        }
        bool known = !strcmp(a, "-qmp") || !strcmp(a, "-name") || !strcmp(a, "--setup-ms") ||
                     !strcmp(a, "--transfer-ms") || !strcmp(a, "--ram-mb") || !strcmp(a, "--stress");
        if (!known) {
            usage_error("unknown option '%s'", argv[i]);
        }
        if (!val) {
            if (i + 1 >= argc) {
                usage_error("option '%s' needs a value", a);
            }
            val = argv[++i];
        }
        if (!strcmp(a, "-qmp")) {
            parse_qmp(val);
        } else if (!strcmp(a, "-name")) {
            /* Thread names are always set; the option exists for QEMU command lines. */
        } else if (!strcmp(a, "--setup-ms")) {
            opt_setup_ms = parse_count(a, val, 0, 3600000);
        } else if (!strcmp(a, "--transfer-ms")) {
            opt_transfer_ms = parse_count(a, val, 0, 3600000);
        } else if (!strcmp(a, "--stress")) {
            opt_stress_rounds = parse_count(a, val, 0, 1000000000);
        } else {
            opt_ram_mb = parse_count(a, val, 1, 1 << 20);
        }
    }
    if (!opt_qmp_path && opt_stress_rounds < 0) {
        usage_error("-qmp unix:PATH,server,wait=off is required");
    }
}

int main(int argc, char **argv)
{
    /* Otherwise minimig-patched would show as "minimig-patche". */
    pthread_setname_np(pthread_self(), "minimig");
    parse_args(argc, argv);
    if (opt_stress_rounds >= 0) {
        return stress_loop(opt_stress_rounds);
    }

    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        fprintf(stderr, "minimig: pipe: %s\n", strerror(errno));
        return 1;
    }
    struct sigaction sa = { 0 };
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int listen_fd = listen_unix(opt_qmp_path);
    if (listen_fd < 0) {
        return 1;
    }

    while (!quit_requested && !quit_signal) {
        struct pollfd fds[2];
        fds[0] = (struct pollfd){ .fd = wake_pipe[0], .events = POLLIN };
        /* One client at a time: later ones wait in the listen backlog. */
        fds[1] = (struct pollfd){ .fd = client.fd >= 0 ? client.fd : listen_fd, .events = POLLIN };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "minimig: poll: %s\n", strerror(errno));
            break;
        }
        if (fds[0].revents & POLLIN) {
            char drain[64];
            while (read(wake_pipe[0], drain, sizeof(drain)) > 0) {
            }
            flush_events();
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (client.fd >= 0) {
                client_readable(&client);
            } else {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) {
                    struct timeval tv = { 5, 0 };
                    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
                    client.fd = fd;
                    send_greeting(&client);
                }
            }
        }
        if (client.fd >= 0 && client.dead) {
            client_close(&client);
        }
    }

    if (quit_signal) {
        fprintf(stderr, "minimig: terminating on signal %d\n", (int)quit_signal);
    }
    MigrationState *s = migrate_get_current();
    qatomic_set(&s->shutdown, 1);
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
    }
    client_close(&client);
    close(listen_fd);
    remove_socket();
    return 0;
}
