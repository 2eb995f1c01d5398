#include "compose/figure.h"

static int is(cmark_node *n, cmark_node_type t)
{
	return n && cmark_node_get_type(n) == t;
}

static int only_child_is(cmark_node *n, cmark_node_type t)
{
	cmark_node *c = cmark_node_first_child(n);
	return is(c, t) && !cmark_node_next(c);
}

enum figure_kind figure_of(cmark_node *para, cmark_node **cap)
{
	*cap = NULL;
	if (!is(para, CMARK_NODE_PARAGRAPH))
		return FIGURE_NONE;
	cmark_node *img = cmark_node_first_child(para);
	if (!is(img, CMARK_NODE_IMAGE))
		return FIGURE_NONE;
	cmark_node *br = cmark_node_next(img);
	if (!br) {
		cmark_node *next = cmark_node_next(para);
		if (is(next, CMARK_NODE_PARAGRAPH) && only_child_is(next, CMARK_NODE_EMPH)) {
			*cap = cmark_node_first_child(next);
			return FIGURE_NEXT;
		}
		return FIGURE_ALONE;
	}
	/* Text on the image's own line ("![a](x.png) and then...") is prose
	 * with a picture in it, not a figure. */
	if (!is(br, CMARK_NODE_SOFTBREAK) && !is(br, CMARK_NODE_LINEBREAK))
		return FIGURE_NONE;
	cmark_node *em = cmark_node_next(br);
	if (is(em, CMARK_NODE_EMPH) && !cmark_node_next(em)) {
		*cap = em;
		return FIGURE_BELOW;
	}
	return FIGURE_UNCLEAR;
}
