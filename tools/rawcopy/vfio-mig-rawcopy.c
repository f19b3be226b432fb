/*
 * vfio-mig-rawcopy: the raw reference of `vfio-mig bench`. Moves bytes from a source buffer into a sink buffer
 * through CONNECTIONS AF_UNIX socketpairs or loopback TCP connections, the plainest fast way: per connection
 * one thread with blocking send() of at most CHUNK bytes and one with blocking recv() of at most CHUNK bytes,
 * each connection a contiguous share of the bytes. Buffers and connections are made (and every page touched)
 * once, before any run; each run is timed from starting the threads to joining them.
 *
 * usage: vfio-mig-rawcopy unix|tcp CONNECTIONS SOURCE_BYTES SINK_BYTES CHUNK SOCKBUF
 *   then one line per run on stdin: BYTES       -> one line on stdout: SECONDS CPU_SECONDS
 *   (CPU = user + system of this process during the run). Offsets wrap around the source and the sink.
 *   "ready" is printed once the buffers and connections exist; errors go to stderr, exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 64

static unsigned char *source, *sink;
static long long source_len, sink_len, chunk;
static int senders[MAX_CONNECTIONS], receivers[MAX_CONNECTIONS];

struct share { int fd; long long begin, end; int failed; };

static void die(const char *what)
{
    fprintf(stderr, "vfio-mig-rawcopy: error: %s: %s\n", what, strerror(errno));
    exit(1);
}

static long long min3(long long a, long long b, long long c)
{
    long long m = a < b ? a : b;
    return m < c ? m : c;
}

static void *send_share(void *arg)
{
    struct share *s = arg;
    for (long long at = s->begin; at < s->end;) {
        long long off = at % source_len;
        ssize_t n = send(s->fd, source + off, (size_t)min3(chunk, s->end - at, source_len - off), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            s->failed = errno;
            return NULL;
        }
        at += n;
    }
    return NULL;
}

static void *receive_share(void *arg)
{
    struct share *s = arg;
    for (long long at = s->begin; at < s->end;) {
        long long off = at % sink_len;
        ssize_t n = recv(s->fd, sink + off, (size_t)min3(chunk, s->end - at, sink_len - off), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->failed = n == 0 ? ECONNRESET : errno;
            return NULL;
        }
        at += n;
    }
    return NULL;
}

static void tune(int fd, int sockbuf, int tcp)
{
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sockbuf, sizeof sockbuf) || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sockbuf, sizeof sockbuf))
        die("setsockopt SO_SNDBUF/SO_RCVBUF");
    int one = 1;
    if (tcp && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one))
        die("setsockopt TCP_NODELAY");
}

static void connect_all(int tcp, int connections, int sockbuf)
{
    int listener = -1;
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t length = sizeof address;
    if (tcp) {
        listener = socket(AF_INET, SOCK_STREAM, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, connections)
            || getsockname(listener, (struct sockaddr *)&address, &length))
            die("loopback listener");
    }
    for (int c = 0; c < connections; c++) {
        if (tcp) {
            senders[c] = socket(AF_INET, SOCK_STREAM, 0);
            if (senders[c] < 0)
                die("socket");
            tune(senders[c], sockbuf, 1);
            if (connect(senders[c], (struct sockaddr *)&address, sizeof address))
                die("connect");
            receivers[c] = accept(listener, NULL, NULL);
            if (receivers[c] < 0)
                die("accept");
            tune(receivers[c], sockbuf, 1);
        } else {
            int pair[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
                die("socketpair");
            senders[c] = pair[0];
            receivers[c] = pair[1];
            tune(senders[c], sockbuf, 0);
            tune(receivers[c], sockbuf, 0);
        }
    }
    if (listener >= 0)
        close(listener);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static unsigned char *touched(long long length, int random)
{
    unsigned char *buffer = malloc((size_t)length);
    if (buffer == NULL)
        die("malloc");
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long long i = 0; i < length; i++) {
        if (random) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17; /* xorshift64: incompressible, cheap */
            buffer[i] = (unsigned char)x;
        } else {
            buffer[i] = 0x5A;
        }
    }
    return buffer;
}

int main(int argc, char **argv)
{
    if (argc != 7 || (strcmp(argv[1], "unix") && strcmp(argv[1], "tcp"))) {
        fprintf(stderr, "usage: vfio-mig-rawcopy unix|tcp CONNECTIONS SOURCE_BYTES SINK_BYTES CHUNK SOCKBUF\n");
        return 2;
    }
    int tcp = strcmp(argv[1], "tcp") == 0;
    int connections = atoi(argv[2]);
    source_len = atoll(argv[3]);
    sink_len = atoll(argv[4]);
    chunk = atoll(argv[5]);
    int sockbuf = atoi(argv[6]);
    if (connections < 1 || connections > MAX_CONNECTIONS || source_len < 1 || sink_len < 1 || chunk < 1 || sockbuf < 4096) {
        fprintf(stderr, "vfio-mig-rawcopy: error: EINVAL: an argument is out of range\n");
        return 2;
    }
    source = touched(source_len, 1);
    sink = touched(sink_len, 0);
    connect_all(tcp, connections, sockbuf);
    printf("ready\n");
    fflush(stdout);

    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        long long bytes = atoll(line);
        if (bytes < 1) {
            fprintf(stderr, "vfio-mig-rawcopy: error: EINVAL: a run needs a positive byte count\n");
            return 2;
        }
        struct share sends[MAX_CONNECTIONS], receives[MAX_CONNECTIONS];
        pthread_t threads[2 * MAX_CONNECTIONS];
        double cpu0 = cpu(), t0 = now();
        for (int c = 0; c < connections; c++) {
            long long begin = bytes * c / connections, end = bytes * (c + 1) / connections;
            sends[c] = (struct share){ senders[c], begin, end, 0 };
            receives[c] = (struct share){ receivers[c], begin, end, 0 };
            if (pthread_create(&threads[2 * c], NULL, send_share, &sends[c]) || pthread_create(&threads[2 * c + 1], NULL, receive_share, &receives[c]))
                die("pthread_create");
        }
        for (int t = 0; t < 2 * connections; t++)
            pthread_join(threads[t], NULL);
        double seconds = now() - t0, cpu_seconds = cpu() - cpu0;
        for (int c = 0; c < connections; c++) {
            if (sends[c].failed || receives[c].failed) {
                errno = sends[c].failed ? sends[c].failed : receives[c].failed;
                die("copy");
            }
        }
        printf("%.9f %.9f\n", seconds, cpu_seconds);
        fflush(stdout);
    }
    return 0;
}
