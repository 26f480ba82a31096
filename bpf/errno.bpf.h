/* SPDX-License-Identifier: GPL-2.0 */
/* errno values used by nsima's hooks (vmlinux.h carries no #defines). */
#ifndef NSIMA_ERRNO_BPF_H
#define NSIMA_ERRNO_BPF_H

#define EPERM 1
#define ENOENT 2
#define EACCES 13
#define ENAMETOOLONG 36

#endif
