/* itemize.c - the public view of a plan's actions: ferry_change, the
 * report's counts, and rsync's --itemize-changes line.  Reads actions
 * only. */
#include <stdint.h>
#include <string.h>

#include "sync/path.h"
#include "sync/plan.h"

#define PUBLIC_FLAGS 0xffu

int ferry__action_visible(const ferry__action *a)
{
	return a->kind <= FERRY__ACT_RMDIR && !(a->flags & FERRY__ACT_QUIET);
}

void ferry__action_change(const ferry__action *a, ferry_change *c)
{
	memset(c, 0, sizeof(*c));
	c->kind = (ferry_change_kind)a->kind;
	c->flags = a->flags & PUBLIC_FLAGS;
	c->path = a->entry.path;
	c->link_target = a->kind == FERRY__ACT_SYMLINK ? a->link : NULL;
	c->size = a->entry.size;
	c->mode = a->entry.mode;
	c->error = a->error;
}

void ferry__action_count(const ferry__action *a, ferry_sync_report *r)
{
	/* By kind; the rest (RMDIR) are directories deleted. */
	uint64_t *count[] = {
	        [FERRY__ACT_MKDIR] = &r->dirs_created,
	        [FERRY__ACT_UPLOAD] = &r->files_uploaded,
	        [FERRY__ACT_META] = &r->files_updated,
	        [FERRY__ACT_SYMLINK] = &r->symlinks_created,
	        [FERRY__ACT_DELETE] = &r->files_deleted,
	};
	size_t k = a->kind;
	if (a->kind == FERRY__ACT_META && a->entry.type == FERRY__T_FILE)
		r->bytes_saved += a->entry.size; /* the content was the same */
	if (a->flags & FERRY_CHANGED_DELTA)
		r->files_delta++;
	if (k < sizeof(count) / sizeof(count[0]) && count[k])
		(*count[k])++;
	else
		r->dirs_deleted++;
}

void ferry__plan_report(const ferry__plan *p, ferry_sync_report *r,
                        void (*on_change)(void *ctx, const ferry_change *c),
                        void *ctx)
{
	for (size_t i = 0; i < p->n; i++) {
		const ferry__action *a = &p->a[i];
		if (!ferry__action_visible(a))
			continue;
		if (r)
			ferry__action_count(a, r);
		if (on_change) {
			ferry_change c;
			ferry__action_change(a, &c);
			on_change(ctx, &c);
		}
	}
}

static void put(char *buf, size_t size, size_t *len, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++, (*len)++)
		if (*len + 1 < size)
			buf[*len] = s[i];
}

static void put_escaped(char *buf, size_t size, size_t *len, const char *s,
                        size_t n)
{
	size_t need = ferry__path_escape(NULL, 0, s, n);
	if (*len + 1 < size)
		ferry__path_escape(buf + *len, size - *len, s, n);
	*len += need;
}

size_t ferry_path_escape(char *buf, size_t size, const char *path)
{
	return ferry__path_escape(buf, size, path, strlen(path));
}

size_t ferry_change_itemize(char *buf, size_t size, const ferry_change *c)
{
	char code[12];
	size_t len = 0;
	unsigned f = c->flags;
	int dir = (f & FERRY__CHANGED_DIR) || c->kind == FERRY_CHANGE_MKDIR ||
	          c->kind == FERRY_CHANGE_RMDIR;
	int is_new = (f & (FERRY_CHANGED_NEW | FERRY_CHANGED_TYPE)) != 0;
	memset(code, '.', 11);
	code[11] = '\0';
	switch (c->kind) {
	case FERRY_CHANGE_DELETE:
	case FERRY_CHANGE_RMDIR:
		memcpy(code, "*deleting  ", 11);
		break;
	case FERRY_CHANGE_MKDIR:
		memcpy(code, "cd+++++++++", 11);
		break;
	case FERRY_CHANGE_SYMLINK:
		memcpy(code, is_new ? "cL+++++++++" : "cLc........", 11);
		break;
	case FERRY_CHANGE_UPLOAD:
	case FERRY_CHANGE_META:
		code[0] = c->kind == FERRY_CHANGE_UPLOAD ? '>' : '.';
		code[1] = dir ? 'd' : 'f';
		if (is_new && c->kind == FERRY_CHANGE_UPLOAD) {
			memset(code + 2, '+', 9);
			break;
		}
		if (f & FERRY_CHANGED_CONTENT)
			code[2] = 'c';
		if (f & FERRY_CHANGED_SIZE)
			code[3] = 's';
		if (f & FERRY_CHANGED_MTIME)
			code[4] = 't';
		if (f & FERRY_CHANGED_MODE)
			code[5] = 'p';
		/* rsync's xattr column, which ferry never uses: a delta. */
		if (f & FERRY_CHANGED_DELTA)
			code[10] = 'D';
		break;
	}
	put(buf, size, &len, code, 11);
	put(buf, size, &len, " ", 1);
	const char *path = c->path ? c->path : "";
	put_escaped(buf, size, &len, path, strlen(path));
	if (dir)
		put(buf, size, &len, "/", 1);
	if (c->kind == FERRY_CHANGE_SYMLINK && c->link_target) {
		put(buf, size, &len, " -> ", 4);
		put_escaped(buf, size, &len, c->link_target,
		            strlen(c->link_target));
	}
	if (size)
		buf[len < size ? len : size - 1] = '\0';
	return len;
}
