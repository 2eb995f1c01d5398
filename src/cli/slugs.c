/* Posts by slug: the .md files of a directory and the slug collisions
 * that would make two posts share one journal. */
#include "cli/cli.h"
#include "compose/post.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --due DIR: the .md files of DIR, by name (dated names sort by date). */
static int list_posts(const char *dir, char ***out, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	struct dirent *e;
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] == '.' || l < 4 || strcmp(e->d_name + l - 3, ".md"))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			char **no = realloc(*out, cap * sizeof *no);
			if (!no)
				break;
			*out = no;
		}
		if (asprintf(&(*out)[*n], "%s/%s", dir, e->d_name) < 0)
			break;
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(*out, *n, sizeof **out, by_name);
	return 0;
}

/* The slug of the post at path, or NULL when it does not parse (its
 * own run reports that). */
static char *slug_of(const char *path)
{
	struct post p = {0};
	char err[512];
	char *slug = NULL;
	if (post_load_opts(&p, path, TEXT_WIDTH, POST_NO_RENDER, err, sizeof err) == POST_OK)
		slug = p.slug ? strdup(p.slug) : NULL;
	post_free(&p);
	return slug;
}

/* The .md files of dir, by name, and their slugs (NULL where a post does
 * not parse: its own run reports that). */
int cli_dir_slugs(const char *dir, char ***files, char ***slugs, size_t *n)
{
	*slugs = NULL;
	if (list_posts(dir, files, n) < 0)
		return -1;
	if (*n && !(*slugs = calloc(*n, sizeof **slugs)))
		return -1;
	for (size_t i = 0; i < *n; i++)
		(*slugs)[i] = slug_of((*files)[i]);
	return 0;
}

void cli_free_dir_slugs(char **files, char **slugs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(files[i]);
		if (slugs)
			free(slugs[i]);
	}
	free(files);
	free(slugs);
}

/* Two posts with one slug share a journal: the second would find every
 * reader "already sent" and send nothing, without a word. The first of
 * the n posts other than skip (-1: none) whose slug is slug, or -1. */
long cli_slug_twin(const char *slug, char **slugs, size_t n, long skip)
{
	for (size_t i = 0; slug && i < n; i++)
		if ((long)i != skip && slugs[i] && !strcmp(slugs[i], slug))
			return (long)i;
	return -1;
}

int cli_say_slug_twin(const char *a, const char *b, const char *slug)
{
	fprintf(stderr, "herald: %s and %s have the same slug \"%s\": they would share one journal, "
		"and the second would be sent to nobody; give one of them its own `slug:` in "
		"the front matter, or rename it\n", a, b, slug);
	return EX_DATAERR;
}

/* For one post: a twin in its own directory. */
int cli_check_slug(const char *path, const char *slug)
{
	const char *sl = strrchr(path, '/');
	char *dir = sl ? strndup(path, (size_t)(sl - path) + (sl == path)) : strdup(".");
	char **files = NULL, **slugs = NULL;
	size_t n = 0;
	int rc = 0;
	if (dir && cli_dir_slugs(dir, &files, &slugs, &n) == 0) {
		/* The post itself is in the list, under whatever name. */
		struct stat me, it;
		long self = -1;
		int known = stat(path, &me) == 0;
		for (size_t i = 0; known && self < 0 && i < n; i++)
			if (stat(files[i], &it) == 0 && it.st_ino == me.st_ino && it.st_dev == me.st_dev)
				self = (long)i;
		long twin = cli_slug_twin(slug, slugs, n, self);
		if (twin >= 0)
			rc = cli_say_slug_twin(path, files[twin], slug);
	}
	cli_free_dir_slugs(files, slugs, n);
	free(dir);
	return rc;
}
