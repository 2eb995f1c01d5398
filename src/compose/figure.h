/* figure: which paragraph of a post is a picture, and which text is its
 * caption. One rule for the HTML part (post.c makes a figure of it), the
 * text part (text.c puts the caption on its own line) and `herald check`
 * (which warns where it cannot tell).
 *
 * The caption is the emphasised line right after the image: in the same
 * paragraph (the next line, no blank line between) or as the next
 * paragraph. Anything else on the line under an image may be a caption
 * or the text that follows: FIGURE_UNCLEAR. */
#ifndef HERALD_FIGURE_H
#define HERALD_FIGURE_H
#include <cmark-gfm.h>

enum figure_kind {
	FIGURE_NONE,    /* not a paragraph that starts with an image */
	FIGURE_ALONE,   /* an image alone, no caption (its title may serve) */
	FIGURE_NEXT,    /* an image alone; *cap: the next paragraph's emphasis */
	FIGURE_BELOW,   /* an image, a line break, *cap: one emphasis */
	FIGURE_UNCLEAR, /* an image, a line break, then other text */
};

/* What para is; *cap is the caption's emphasis node (FIGURE_NEXT and
 * FIGURE_BELOW), else NULL. */
enum figure_kind figure_of(cmark_node *para, cmark_node **cap);
#endif
