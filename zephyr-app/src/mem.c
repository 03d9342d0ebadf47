/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * The ARM EABI copy and fill routines the Rust code calls (LLVM emits
 * __aeabi_memcpy and friends on ARM), routed to the C library's memcpy, memmove and
 * memset that the rest of the image uses already. Without them the Rust library
 * brings compiler_builtins' own word-at-a-time copies (about 2.5 KB). These come
 * first on the link line (the application library), so they are the ones linked.
 */
#include <stddef.h>
#include <string.h>

void __aeabi_memcpy(void *dst, const void *src, size_t n)
{
	(void)memcpy(dst, src, n);
}

void __aeabi_memcpy4(void *dst, const void *src, size_t n)
{
	(void)memcpy(dst, src, n);
}

void __aeabi_memcpy8(void *dst, const void *src, size_t n)
{
	(void)memcpy(dst, src, n);
}

void __aeabi_memmove(void *dst, const void *src, size_t n)
{
	(void)memmove(dst, src, n);
}

void __aeabi_memmove4(void *dst, const void *src, size_t n)
{
	(void)memmove(dst, src, n);
}

void __aeabi_memmove8(void *dst, const void *src, size_t n)
{
	(void)memmove(dst, src, n);
}

void __aeabi_memset(void *dst, size_t n, int c)
{
	(void)memset(dst, c, n);
}

void __aeabi_memset4(void *dst, size_t n, int c)
{
	(void)memset(dst, c, n);
}

void __aeabi_memset8(void *dst, size_t n, int c)
{
	(void)memset(dst, c, n);
}

void __aeabi_memclr(void *dst, size_t n)
{
	(void)memset(dst, 0, n);
}

void __aeabi_memclr4(void *dst, size_t n)
{
	(void)memset(dst, 0, n);
}

void __aeabi_memclr8(void *dst, size_t n)
{
	(void)memset(dst, 0, n);
}
