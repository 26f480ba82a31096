// SPDX-License-Identifier: Apache-2.0
// A FUSE filesystem whose file "stall" never answers a read (or, with --stall-open, an open):
// the kernel keeps the reader in its system call until this process dies (which aborts the
// connection). "ok" reads normally. Single-threaded libfuse3 low-level loop: an unanswered
// request does not stop it from serving the next one. Used by fuse_stall_test.cpp.
//
//   access_fuse_stall MOUNTPOINT [--stall-open]
// Prints "ready\n" on stdout once mounted.
#define FUSE_USE_VERSION 34
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { kRoot = 1, kOk = 2, kStall = 3 };
static const char kOkData[] = "fuse ok\n";
static int stall_open;

static void attr_of(fuse_ino_t ino, struct stat *st) {
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_nlink = 1;
	if (ino == kRoot) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_size = ino == kOk ? (off_t)(sizeof kOkData - 1) : 1 << 20;
	}
}

static void do_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
	struct fuse_entry_param e;
	fuse_ino_t ino = 0;
	if (parent == kRoot && strcmp(name, "ok") == 0) ino = kOk;
	if (parent == kRoot && strcmp(name, "stall") == 0) ino = kStall;
	if (!ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof e);
	e.ino = ino;
	e.attr_timeout = 60;
	e.entry_timeout = 60;
	attr_of(ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void do_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
	struct stat st;
	(void)fi;
	if (ino != kRoot && ino != kOk && ino != kStall) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	attr_of(ino, &st);
	fuse_reply_attr(req, &st, 60);
}

static void do_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
	if (ino == kStall && stall_open) return; /* never answered */
	fi->direct_io = 1; /* every read is a READ request, none served from the page cache */
	fuse_reply_open(req, fi);
}

static void do_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi) {
	(void)fi;
	if (ino == kStall) return; /* never answered: the reader stays in pread(2) */
	if (off >= (off_t)(sizeof kOkData - 1)) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > sizeof kOkData - 1 - (size_t)off) size = sizeof kOkData - 1 - (size_t)off;
	fuse_reply_buf(req, kOkData + off, size);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = do_lookup,
	.getattr = do_getattr,
	.open = do_open,
	.read = do_read,
};

int main(int argc, char **argv) {
	char *fargv[] = {argv[0], NULL};
	struct fuse_args args = FUSE_ARGS_INIT(1, fargv);
	struct fuse_session *se;
	int rc;
	if (argc < 2) {
		fprintf(stderr, "usage: %s MOUNTPOINT [--stall-open]\n", argv[0]);
		return 2;
	}
	stall_open = argc > 2 && strcmp(argv[2], "--stall-open") == 0;
	se = fuse_session_new(&args, &ops, sizeof ops, NULL);
	if (!se) return 1;
	if (fuse_set_signal_handlers(se) != 0) return 1;
	if (fuse_session_mount(se, argv[1]) != 0) return 1;
	printf("ready\n");
	fflush(stdout);
	rc = fuse_session_loop(se);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	return rc ? 1 : 0;
}
