/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * The Zepto local service as a Zephyr system call.
 *
 * A client holds a ticket: one of the service's semaphores (zepto_ticket()), granted
 * to its thread with k_object_access_grant(). The ticket names the client's slot; its
 * count means nothing. zepto_call() sends the service-protocol request in buf
 * (docs/service.md) and returns when the reply has overwritten it, also for programs
 * that wait (PENDING is never returned). From user mode the kernel first checks that
 * the caller was granted the ticket and may write all len bytes of buf.
 */
#ifndef ZEPTO_SERVICE_H_
#define ZEPTO_SERVICE_H_

#include <stddef.h>
#include <stdint.h>
#include <zephyr/kernel.h>

/* Client slots (the Rust service's SLOTS). */
#define ZEPTO_SLOTS 4
/* Largest client buffer. */
#define ZEPTO_BUFFER 80

/* The ticket of slot (0 .. ZEPTO_SLOTS - 1), or NULL. */
struct k_sem *zepto_ticket(unsigned int slot);

/*
 * Returns the reply's length (header and data, at most len), -EINVAL if ticket is not
 * a service ticket, -E2BIG if len > ZEPTO_BUFFER, -EBUSY if another call with the same
 * ticket is in progress. A user thread that passes a ticket it was not granted or a
 * buffer it may not write is stopped (kernel oops).
 */
__syscall int zepto_call(struct k_sem *ticket, uint8_t *buf, size_t len);

#include <zephyr/syscalls/zepto_service.h>

#endif /* ZEPTO_SERVICE_H_ */
