/*
 * The recoverable window (agent/restore/window.h).
 */
#include "agent/restore/window.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/repo/repo.h"

#define DEFAULT_SEG_SIZE (UINT64_C(16) << 20)

/* Segments are kept by name until the size is known. */
typedef struct walk {
	agent_wal_index *idx;
	size_t prefix_len;
	int rv;
	coffer_err *err;
} walk;

static bool
upper_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) {
			return (false);
		}
	}
	return (true);
}

static int
grow(void **arr, size_t *cap, size_t n, size_t elem, coffer_err *err)
{
	if (n < *cap) {
		return (0);
	}
	size_t ncap = *cap == 0 ? 64 : *cap * 2;
	void *p = realloc(*arr, ncap * elem);
	if (p == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory listing WAL"));
	}
	*arr = p;
	*cap = ncap;
	return (0);
}

static int
on_wal(const char *key, const coffer_repo_info *info, void *arg)
{
	walk *w = arg;
	const char *p = key + w->prefix_len;
	char *end = NULL;
	uint64_t sysid = strtoull(p, &end, 10);
	if (end == p || *end != '/' || sysid == 0) {
		return (0);
	}
	p = end + 1;
	if (strlen(p) < 9 || !upper_hex(p, 8) || p[8] != '/') {
		return (0);
	}
	const char *name = p + 9;
	if (strlen(name) < 24 || !upper_hex(name, 24)) {
		return (0); /* .history and anything else */
	}
	const char *rest = name + 24;
	agent_wal_index *idx = w->idx;
	if (*rest == '\0' || strncmp(rest, ".alt-", 5) == 0) {
		w->rv = grow((void **)&idx->segs, &idx->cap, idx->n, sizeof(*idx->segs), w->err);
		if (w->rv != 0) {
			return (1);
		}
		agent_wal_segment *s = &idx->segs[idx->n++];
		memset(s, 0, sizeof(*s));
		s->sysid = sysid;
		memcpy(s->name, name, 24);
		s->name[24] = '\0';
		s->stored_bytes = info->size;
		s->archived_ms = info->mtime_ms;
	} else if (strlen(rest) == 16 && rest[0] == '.' && upper_hex(rest + 1, 8) &&
	    strcmp(rest + 9, ".backup") == 0) {
		w->rv = grow((void **)&idx->labels, &idx->caplabels, idx->nlabels,
		    sizeof(*idx->labels), w->err);
		if (w->rv != 0) {
			return (1);
		}
		agent_wal_label *l = &idx->labels[idx->nlabels++];
		l->sysid = sysid;
		memcpy(l->segment, name, 24);
		l->segment[24] = '\0';
		l->offset = (uint32_t)strtoul(rest + 1, NULL, 16);
	}
	return (0);
}

/* A label (segment X/Y, offset) and a start LSN L agree for a size s when
 * X * 2^32 + Y * s + offset == L; Y == 0 says nothing about s. */
static uint64_t
derive_seg_size(const agent_wal_index *idx, coffer_manifest *const *ms, size_t n)
{
	for (size_t i = 0; i < idx->nlabels; i++) {
		const agent_wal_label *l = &idx->labels[i];
		char part[9];
		memcpy(part, l->segment + 8, 8);
		part[8] = '\0';
		uint64_t x = strtoull(part, NULL, 16);
		memcpy(part, l->segment + 16, 8);
		uint64_t y = strtoull(part, NULL, 16);
		if (y == 0) {
			continue;
		}
		for (size_t j = 0; j < n; j++) {
			uint64_t start = 0;
			if (ms[j] == NULL || ms[j]->kind != COFFER_MANIFEST_PHYSICAL ||
			    ms[j]->system_identifier != l->sysid ||
			    agent_lsn_parse(ms[j]->lsn_start, &start) != 0) {
				continue;
			}
			for (uint64_t s = UINT64_C(1) << 20; s <= UINT64_C(1) << 30; s <<= 1) {
				if (y < (UINT64_C(1) << 32) / s &&
				    (x << 32) + y * s + l->offset == start) {
					return (s);
				}
			}
		}
	}
	return (0);
}

static int
by_position(const void *a, const void *b)
{
	const agent_wal_segment *x = a, *y = b;
	if (x->sysid != y->sysid) {
		return (x->sysid < y->sysid ? -1 : 1);
	}
	if (x->timeline != y->timeline) {
		return (x->timeline < y->timeline ? -1 : 1);
	}
	if (x->segno != y->segno) {
		return (x->segno < y->segno ? -1 : 1);
	}
	return (0);
}

int
agent_wal_index_load(
    agent_ctx *ctx, coffer_manifest *const *ms, size_t n, agent_wal_index *idx, coffer_err *err)
{
	memset(idx, 0, sizeof(*idx));
	/* services/<service>/wal/, from the same layout rule every key obeys. */
	char key[COFFER_REPO_KEY_MAX];
	int rc = coffer_repo_wal_key(
	    key, sizeof(key), ctx->cfg->service, 1, 1, "000000010000000000000001", err);
	if (rc != 0) {
		return (rc);
	}
	char *cut = strstr(key, "/wal/");
	if (cut == NULL) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "unexpected WAL layout: %s", key));
	}
	cut[5] = '\0';
	walk w = { .idx = idx, .prefix_len = strlen(key), .err = err };
	rc = coffer_repo_list(ctx->repo, key, on_wal, &w, err);
	if (rc == 0) {
		rc = w.rv;
	}
	if (rc != 0) {
		agent_wal_index_free(idx);
		return (rc);
	}
	idx->seg_size = derive_seg_size(idx, ms, n);
	idx->seg_size_derived = idx->seg_size != 0;
	if (idx->seg_size == 0) {
		idx->seg_size = DEFAULT_SEG_SIZE;
	}
	size_t kept = 0;
	for (size_t i = 0; i < idx->n; i++) {
		agent_wal_segment s = idx->segs[i];
		if (agent_segment_number(s.name, idx->seg_size, &s.timeline, &s.segno) == 0) {
			idx->segs[kept++] = s;
		}
	}
	idx->n = kept;
	if (idx->n > 0) {
		qsort(idx->segs, idx->n, sizeof(*idx->segs), by_position);
	}
	/* A segment and its alternate are one segment: the earlier-archived. */
	kept = 0;
	for (size_t i = 0; i < idx->n; i++) {
		if (kept > 0 && by_position(&idx->segs[kept - 1], &idx->segs[i]) == 0) {
			continue;
		}
		idx->segs[kept++] = idx->segs[i];
	}
	idx->n = kept;
	return (0);
}

void
agent_wal_index_free(agent_wal_index *idx)
{
	free(idx->segs);
	free(idx->labels);
	memset(idx, 0, sizeof(*idx));
}

/* The index of (sysid, tl, segno), or -1. */
static long
find_segment(const agent_wal_index *idx, uint64_t sysid, uint32_t tl, uint64_t segno)
{
	agent_wal_segment key = { .sysid = sysid, .timeline = tl, .segno = segno };
	const agent_wal_segment *hit =
	    idx->n > 0 ? bsearch(&key, idx->segs, idx->n, sizeof(*idx->segs), by_position) : NULL;
	return (hit != NULL ? (long)(hit - idx->segs) : -1);
}

/* The last index of the unbroken run that holds index i. */
static size_t
run_end(const agent_wal_index *idx, size_t i)
{
	while (i + 1 < idx->n && idx->segs[i + 1].sysid == idx->segs[i].sysid &&
	    idx->segs[i + 1].timeline == idx->segs[i].timeline &&
	    idx->segs[i + 1].segno == idx->segs[i].segno + 1) {
		i++;
	}
	return (i);
}

/* The segments of a physical backup: where it starts and where it is
 * consistent. false for a manifest without usable LSNs. */
static bool
backup_segments(
    const agent_wal_index *idx, const coffer_manifest *m, uint64_t *start_seg, uint64_t *stop_seg)
{
	uint64_t start = 0, stop = 0;
	if (m == NULL || m->kind != COFFER_MANIFEST_PHYSICAL ||
	    agent_lsn_parse(m->lsn_start, &start) != 0 ||
	    agent_lsn_parse(m->lsn_stop, &stop) != 0 || stop == 0) {
		return (false);
	}
	*start_seg = start / idx->seg_size;
	*stop_seg = (stop - 1) / idx->seg_size;
	if (*stop_seg < *start_seg) {
		*stop_seg = *start_seg;
	}
	return (true);
}

int
agent_windows(const agent_wal_index *idx, coffer_manifest *const *ms, size_t n, agent_window **out,
    size_t *nout, coffer_err *err)
{
	*out = NULL;
	*nout = 0;
	size_t cap = 0;
	for (size_t i = 0; i < idx->n;) {
		size_t e = run_end(idx, i);
		const agent_wal_segment *a = &idx->segs[i], *b = &idx->segs[e];
		const coffer_manifest *oldest = NULL;
		uint64_t oldest_start = 0, oldest_stop_lsn = 0;
		size_t backups = 0;
		for (size_t j = 0; j < n; j++) {
			uint64_t s0, s1, stop;
			if (!backup_segments(idx, ms[j], &s0, &s1) ||
			    ms[j]->system_identifier != a->sysid ||
			    ms[j]->timeline != a->timeline || s0 < a->segno || s1 > b->segno) {
				continue;
			}
			backups++;
			(void)agent_lsn_parse(ms[j]->lsn_stop, &stop);
			if (oldest == NULL || stop < oldest_stop_lsn) {
				oldest = ms[j];
				oldest_stop_lsn = stop;
				oldest_start = s0;
			}
		}
		if (oldest != NULL) {
			if (grow((void **)out, &cap, *nout, sizeof(**out), err) != 0) {
				free(*out);
				*out = NULL;
				*nout = 0;
				return (COFFER_ENOMEM);
			}
			agent_window *w = &(*out)[(*nout)++];
			memset(w, 0, sizeof(*w));
			w->sysid = a->sysid;
			w->timeline = a->timeline;
			snprintf(
			    w->oldest_backup, sizeof(w->oldest_backup), "%s", oldest->backup_id);
			w->oldest_ms = oldest->finished_at;
			agent_lsn_format(oldest_stop_lsn, w->oldest_lsn);
			snprintf(w->newest_segment, sizeof(w->newest_segment), "%s", b->name);
			agent_lsn_format((b->segno + 1) * idx->seg_size, w->newest_lsn);
			w->newest_archived_ms = b->archived_ms;
			w->backups = backups;
			w->segments = b->segno - oldest_start + 1;
		}
		i = e + 1;
	}
	return (0);
}

int
agent_wal_plan_for(const agent_wal_index *idx, const coffer_manifest *m, const agent_target *t,
    agent_wal_plan *out, coffer_err *err)
{
	(void)err;
	memset(out, 0, sizeof(*out));
	uint64_t s0 = 0, s1 = 0;
	if (!backup_segments(idx, m, &s0, &s1)) {
		snprintf(out->basis, sizeof(out->basis), "the backup's manifest has no LSNs");
		return (0);
	}
	long first = find_segment(idx, m->system_identifier, m->timeline, s0);
	if (first < 0) {
		agent_segment_name(m->timeline, s0, idx->seg_size, out->first);
		snprintf(out->basis, sizeof(out->basis),
		    "segment %s, where the backup starts, is not in the repository", out->first);
		return (0);
	}
	size_t last_i = run_end(idx, (size_t)first);
	uint64_t end_seg = idx->segs[last_i].segno;
	uint64_t want = end_seg;
	bool reaches = end_seg >= s1;
	switch (t->kind) {
	case AGENT_TARGET_LSN: {
		uint64_t tseg = t->lsn / idx->seg_size;
		want = tseg > s1 ? tseg : s1;
		reaches = reaches && end_seg >= want;
		snprintf(
		    out->basis, sizeof(out->basis), "to the segment that holds the target LSN");
		break;
	}
	case AGENT_TARGET_TIME: {
		bool found = false;
		for (size_t i = (size_t)first; i <= last_i; i++) {
			if (idx->segs[i].segno >= s1 && idx->segs[i].archived_ms >= t->time_ms) {
				want = idx->segs[i].segno;
				found = true;
				break;
			}
		}
		reaches = reaches && found;
		snprintf(out->basis, sizeof(out->basis),
		    found ? "to the first segment archived after the target time"
		          : "no segment was archived after the target time: recovery would run out "
		            "of WAL before it");
		break;
	}
	case AGENT_TARGET_IMMEDIATE:
		want = s1;
		snprintf(out->basis, sizeof(out->basis), "to the backup's own end (consistency)");
		break;
	case AGENT_TARGET_XID:
	case AGENT_TARGET_NAME:
	case AGENT_TARGET_NONE:
		snprintf(out->basis, sizeof(out->basis),
		    t->kind == AGENT_TARGET_NONE
		        ? "all WAL archived without a gap from the backup's start"
		        : "all WAL archived without a gap from the backup's start (PostgreSQL "
		          "decides where the target is; at most this much)");
		break;
	}
	if (want > end_seg) {
		want = end_seg;
	}
	out->reaches = reaches;
	for (size_t i = (size_t)first; i <= last_i && idx->segs[i].segno <= want; i++) {
		out->count++;
		out->stored_bytes += idx->segs[i].stored_bytes;
	}
	snprintf(out->first, sizeof(out->first), "%s", idx->segs[first].name);
	agent_segment_name(m->timeline, want, idx->seg_size, out->last);
	return (0);
}
