/* A delay line for TCP, for bench/run.py --latency: this kernel has no
 * netem, so the round trip is made here. It listens on LISTEN_IP:PORT and,
 * for each connection, connects to TARGET_IP:PORT and forwards the bytes
 * each way DELAY_MS after it read them: every read is one chunk stamped
 * with its due time, so order is kept and a request/reply exchange costs
 * 2 x DELAY_MS however the bytes were split. Nagle is off on both sides so
 * that nothing but the delay holds a chunk back. The TCP handshake itself
 * is not delayed (the greeting is): a connection costs one round trip
 * less than on a real path, a message costs the same.
 *
 * One thread, epoll, one timerfd set to the oldest chunk's due time; since
 * the delay is constant the chunks of all connections become due in the
 * order they were read, so one FIFO holds them all. A direction stops
 * reading while more than CAP bytes are on their way (TCP flow control
 * then slows the sender, as a full link would).
 *
 *   delayline LISTEN_IP PORT TARGET_IP TARGET_PORT DELAY_MS
 * prints "ready" on stdout once it listens; runs until killed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define CAP (8u << 20)
#define READ_SIZE 65536

struct conn;

/* One socket of a relayed connection; the chunks read from it go to peer. */
struct side {
	int fd;
	struct conn *c;
	struct side *peer;
	char *out;              /* due bytes not yet written to fd */
	size_t outlen, outoff, outcap;
	size_t inflight;        /* bytes in the FIFO headed for this side */
	int rd_eof, eof_due, wr_shut;
	int registered; /* in the epoll set: a socket is taken out when it
			   wants nothing, or its hang-up would wake us forever */
};

struct conn {
	struct side s[2];
	int chunks; /* in the FIFO: a dead conn is freed once none are left */
	int dead;
	struct conn *next_dead;
};

struct chunk {
	struct chunk *next;
	long long due;
	struct side *to;
	size_t len; /* 0: the end of the stream */
	char data[];
};

static struct chunk *head, *tail;
static struct conn *graveyard;
static int ep, tfd;
static long long delay_ns;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void arm_timer(void)
{
	struct itimerspec it = {0};
	if (head) {
		it.it_value.tv_sec = head->due / 1000000000LL;
		it.it_value.tv_nsec = head->due % 1000000000LL;
	}
	timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
}

static void arm(struct side *s)
{
	if (s->c->dead)
		return;
	struct epoll_event ev = {.data.ptr = s};
	if (!s->rd_eof && s->peer->inflight + s->peer->outlen - s->peer->outoff < CAP)
		ev.events |= EPOLLIN;
	if (s->outoff < s->outlen)
		ev.events |= EPOLLOUT;
	if (!ev.events) {
		if (s->registered)
			epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
		s->registered = 0;
		return;
	}
	epoll_ctl(ep, s->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev);
	s->registered = 1;
}

static void kill_conn(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	for (int i = 0; i < 2; i++) {
		close(c->s[i].fd);
		free(c->s[i].out);
	}
	/* Freed after this round of events, which may still name its sides. */
	c->next_dead = graveyard;
	graveyard = c;
}

static void bury(void)
{
	struct conn **pp = &graveyard;
	while (*pp) {
		struct conn *c = *pp;
		if (c->chunks) {
			pp = &c->next_dead;
			continue;
		}
		*pp = c->next_dead;
		free(c);
	}
}

static void flush(struct side *s)
{
	while (s->outoff < s->outlen) {
		ssize_t n = write(s->fd, s->out + s->outoff, s->outlen - s->outoff);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			kill_conn(s->c);
			return;
		}
		s->outoff += (size_t)n;
	}
	if (s->outoff == s->outlen) {
		s->outoff = s->outlen = 0;
		if (s->eof_due && !s->wr_shut) {
			shutdown(s->fd, SHUT_WR);
			s->wr_shut = 1;
		}
	}
	if (s->wr_shut && s->peer->wr_shut) {
		kill_conn(s->c);
		return;
	}
	arm(s);
	arm(s->peer); /* it may read again now that this side drained */
}

static void on_read(struct side *s)
{
	struct chunk *k = malloc(sizeof *k + READ_SIZE);
	if (!k) {
		kill_conn(s->c);
		return;
	}
	ssize_t n = read(s->fd, k->data, READ_SIZE);
	if (n < 0 && errno == EAGAIN) {
		free(k);
		return;
	}
	if (n < 0) {
		free(k);
		kill_conn(s->c);
		return;
	}
	if (n == 0)
		s->rd_eof = 1;
	k->next = NULL;
	k->due = now_ns() + delay_ns;
	k->to = s->peer;
	k->len = (size_t)n;
	s->peer->inflight += k->len;
	s->c->chunks++;
	if (tail)
		tail->next = k;
	else
		head = k;
	tail = k;
	if (head == k)
		arm_timer();
	arm(s);
}

static void release_due(void)
{
	long long t = now_ns();
	while (head && head->due <= t) {
		struct chunk *k = head;
		head = k->next;
		if (!head)
			tail = NULL;
		struct side *to = k->to;
		struct conn *c = to->c;
		c->chunks--;
		if (c->dead) {
			free(k);
			continue;
		}
		to->inflight -= k->len;
		if (k->len == 0) {
			to->eof_due = 1;
		} else {
			if (to->outlen + k->len > to->outcap) {
				size_t cap = (to->outlen + k->len) * 2;
				char *p = realloc(to->out, cap);
				if (!p) {
					free(k);
					kill_conn(c);
					continue;
				}
				to->out = p;
				to->outcap = cap;
			}
			memcpy(to->out + to->outlen, k->data, k->len);
			to->outlen += k->len;
		}
		free(k);
		flush(to);
	}
	arm_timer();
}

static void nonblock_nodelay(int fd)
{
	int one = 1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void on_accept(int lfd, const struct sockaddr_in *target)
{
	int a = accept(lfd, NULL, NULL);
	if (a < 0)
		return;
	int b = socket(AF_INET, SOCK_STREAM, 0);
	/* The target is on this host: a blocking connect returns at once. */
	if (b < 0 || connect(b, (const struct sockaddr *)target, sizeof *target) < 0) {
		perror("delayline: connect to target");
		close(a);
		if (b >= 0)
			close(b);
		return;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(a);
		close(b);
		return;
	}
	int fds[2] = {a, b};
	for (int i = 0; i < 2; i++) {
		struct side *s = &c->s[i];
		s->fd = fds[i];
		s->c = c;
		s->peer = &c->s[1 - i];
		nonblock_nodelay(s->fd);
		arm(s);
	}
}

static int addr(const char *ip, const char *port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)atoi(port));
	return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in la, ta;
	if (argc != 6 || addr(argv[1], argv[2], &la) || addr(argv[3], argv[4], &ta)) {
		fprintf(stderr, "usage: delayline LISTEN_IP PORT TARGET_IP TARGET_PORT DELAY_MS\n");
		return 64;
	}
	delay_ns = (long long)(atof(argv[5]) * 1e6);
	signal(SIGPIPE, SIG_IGN);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&la, sizeof la) || listen(lfd, 1024)) {
		perror("delayline: listen");
		return 71;
	}
	ep = epoll_create1(0);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	/* The listener and the timer are told apart from sides by these. */
	static int lmark, tmark;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lmark};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.ptr = &tmark;
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	printf("ready\n");
	fflush(stdout);
	struct epoll_event evs[128];
	for (;;) {
		int n = epoll_wait(ep, evs, 128, -1);
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &lmark) {
				on_accept(lfd, &ta);
			} else if (p == &tmark) {
				unsigned long long x;
				if (read(tfd, &x, sizeof x) < 0 && errno != EAGAIN)
					perror("delayline: timerfd");
			} else {
				struct side *s = p;
				/* An earlier event of this round may have closed it;
				 * a dead conn is not freed before its chunks are. */
				if (s->c->dead)
					continue;
				if (!s->rd_eof && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
					on_read(s);
				if (!s->c->dead && (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
					flush(s);
			}
		}
		release_due();
		bury();
	}
}
