/* The ceiling for herald's SMTP throughput: a bare libcurl loop that sends
 * one pre-rendered message COUNT times over N reused connections (one easy
 * handle per thread, as herald does, since libcurl's SMTP code blocks for
 * the final reply), one recipient per transaction, and nothing else: no
 * merge, no MIME, no journal. herald/ceiling is what herald's own work
 * costs.
 *
 *   ceiling URL MESSAGE.eml COUNT CONNECTIONS  -> prints messages/second */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct worker {
	pthread_t th;
	const char *url, *data;
	size_t len, off;
	long count, failed;
};

static size_t rd(char *p, size_t sz, size_t n, void *ud)
{
	struct worker *w = ud;
	size_t k = sz * n;
	if (k > w->len - w->off)
		k = w->len - w->off;
	memcpy(p, w->data + w->off, k);
	w->off += k;
	return k;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	CURL *h = curl_easy_init();
	struct curl_slist *rcpt = curl_slist_append(NULL, "<reader@example.net>");
	curl_easy_setopt(h, CURLOPT_URL, w->url);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, rd);
	curl_easy_setopt(h, CURLOPT_READDATA, w);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_MAIL_FROM, "<joy@example.org>");
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)w->len);
	for (long i = 0; i < w->count; i++) {
		w->off = 0;
		w->failed += curl_easy_perform(h) != CURLE_OK;
	}
	curl_easy_cleanup(h);
	curl_slist_free_all(rcpt);
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: ceiling URL MESSAGE COUNT CONNECTIONS\n");
		return 64;
	}
	FILE *f = fopen(argv[2], "rb");
	if (!f) {
		perror(argv[2]);
		return 66;
	}
	static char buf[1 << 20];
	size_t len = fread(buf, 1, sizeof buf, f);
	fclose(f);
	long count = atol(argv[3]);
	int n = atoi(argv[4]);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct worker *w = calloc((size_t)n, sizeof *w);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		w[i].url = argv[1];
		w[i].data = buf;
		w[i].len = len;
		w[i].count = count / n + (i < count % n);
		pthread_create(&w[i].th, NULL, run, &w[i]);
	}
	long failed = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].th, NULL);
		failed += w[i].failed;
	}
	double el = now() - t0;
	printf("%.1f\n", count / el);
	fprintf(stderr, "ceiling: %ld messages in %.2f s over %d connections, %ld failed\n",
		count, el, n, failed);
	free(w);
	curl_global_cleanup();
	return failed ? 1 : 0;
}
