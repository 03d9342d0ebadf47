/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * The service side: the zepto_call() system call, the mailboxes, and the supervisor
 * thread that runs the Rust service (service/src/lib.rs).
 *
 * Everything the service owns lives in the memory partition zepto_svc_part, which is
 * added to no client's memory domain: the Rust service's state (Zepto Heap, VM,
 * client slots) and one mailbox per slot. A call copies the client's buffer into the
 * slot's mailbox, queues the slot number for the service thread, sleeps until the
 * service has written the reply into the mailbox, and copies the reply back. The
 * service never touches client memory; the kernel checks the client's buffer
 * before the copy.
 */
#include <errno.h>
#include <string.h>

#include <zephyr/app_memory/app_memdomain.h>
#include <zephyr/internal/syscall_handler.h>
#include <zephyr/kernel.h>
#include <zephyr/spinlock.h>
#include <zephyr/sys/byteorder.h>
#include <zephyr/sys/printk.h>

#include <zepto_service.h>

#include "zepto_us.h"

#define REPLY_HEADER 4
#define SERVICE_STACK 2048
#define SERVICE_PRIORITY 5
/* At least zepto_us_state_size() (checked when the service starts). */
#define STATE_SIZE 1024

#ifdef CONFIG_USERSPACE
K_APPMEM_PARTITION_DEFINE(zepto_svc_part);
#define SERVICE_MEM K_APP_BMEM(zepto_svc_part)
#else
#define SERVICE_MEM
#endif

struct mailbox {
	uint8_t buf[ZEPTO_BUFFER];
	size_t len;
};

SERVICE_MEM static struct mailbox boxes[ZEPTO_SLOTS];
SERVICE_MEM static uint8_t state[STATE_SIZE] __aligned(8);

/* Kernel objects: the tickets clients are granted, and the service's own. */
struct k_sem zepto_tickets[ZEPTO_SLOTS];
static struct k_sem done[ZEPTO_SLOTS];
static bool in_call[ZEPTO_SLOTS];
static struct k_spinlock lock;
K_MSGQ_DEFINE(requests, sizeof(uint8_t), ZEPTO_SLOTS, 1);

static int tickets_init(void)
{
	for (int i = 0; i < ZEPTO_SLOTS; i++) {
		k_sem_init(&zepto_tickets[i], 0, 1);
		k_sem_init(&done[i], 0, 1);
	}
	return 0;
}
SYS_INIT(tickets_init, POST_KERNEL, 0);

struct k_sem *zepto_ticket(unsigned int slot)
{
	return slot < ZEPTO_SLOTS ? &zepto_tickets[slot] : NULL;
}

static int slot_of(const struct k_sem *ticket)
{
	for (int i = 0; i < ZEPTO_SLOTS; i++) {
		if (ticket == &zepto_tickets[i]) {
			return i;
		}
	}
	return -1;
}

const void *zepto_service_memory(void)
{
	return state;
}

int z_impl_zepto_call(struct k_sem *ticket, uint8_t *buf, size_t len)
{
	int slot = slot_of(ticket);
	struct mailbox *b;
	k_spinlock_key_t key;
	uint8_t s;
	size_t n;

	if (slot < 0) {
		return -EINVAL;
	}
	if (len > ZEPTO_BUFFER) {
		return -E2BIG;
	}
	key = k_spin_lock(&lock);
	if (in_call[slot]) {
		k_spin_unlock(&lock, key);
		return -EBUSY;
	}
	in_call[slot] = true;
	k_spin_unlock(&lock, key);

	b = &boxes[slot];
	memcpy(b->buf, buf, len);
	b->len = len;
	s = (uint8_t)slot;
	k_sem_reset(&done[slot]);
	(void)k_msgq_put(&requests, &s, K_FOREVER);
	(void)k_sem_take(&done[slot], K_FOREVER);
	memcpy(buf, b->buf, len);
	n = len < REPLY_HEADER ? len : MIN(len, REPLY_HEADER + sys_get_le16(&b->buf[2]));

	key = k_spin_lock(&lock);
	in_call[slot] = false;
	k_spin_unlock(&lock, key);
	return (int)n;
}

#ifdef CONFIG_USERSPACE
static inline int z_vrfy_zepto_call(struct k_sem *ticket, uint8_t *buf, size_t len)
{
	/* The caller must hold this ticket, and it must be one of the service's. */
	K_OOPS(K_SYSCALL_OBJ(ticket, K_OBJ_SEM));
	K_OOPS(K_SYSCALL_VERIFY_MSG(slot_of(ticket) >= 0, "not a Zepto service ticket"));
	/* The whole buffer must be the caller's to write (the reply overwrites it). */
	K_OOPS(K_SYSCALL_MEMORY_WRITE(buf, len));
	return z_impl_zepto_call(ticket, buf, len);
}
#include <zephyr/syscalls/zepto_call_mrsh.c>
#endif

/* Called by the Rust service (service/src/lib.rs). */

int zepto_us_next_request(int32_t timeout_ms)
{
	uint8_t s;

	if (k_msgq_get(&requests, &s, timeout_ms < 0 ? K_FOREVER : K_MSEC(timeout_ms)) != 0) {
		return -EAGAIN;
	}
	return s;
}

uint8_t *zepto_us_box(int slot, size_t *len)
{
	if (slot < 0 || slot >= ZEPTO_SLOTS) {
		return NULL;
	}
	*len = boxes[slot].len;
	return boxes[slot].buf;
}

void zepto_us_reply(int slot)
{
	if (slot >= 0 && slot < ZEPTO_SLOTS) {
		k_sem_give(&done[slot]);
	}
}

int64_t zepto_us_uptime_ms(void)
{
	return k_uptime_get();
}

FUNC_NORETURN void zepto_us_panic(void)
{
	printk("zepto: service panic\n");
	k_panic();
	CODE_UNREACHABLE;
}

static void service_thread(void *p1, void *p2, void *p3)
{
	ARG_UNUSED(p1);
	ARG_UNUSED(p2);
	ARG_UNUSED(p3);
	printk("zepto: service state %u B at %p (needs %u B)\n", (unsigned int)sizeof(state),
	       (void *)state, (unsigned int)zepto_us_state_size());
	int err = zepto_us_service_main(state, sizeof(state));

	printk("zepto: service could not start (%d)\n", err);
}

K_THREAD_DEFINE(zepto_service, SERVICE_STACK, service_thread, NULL, NULL, NULL,
		SERVICE_PRIORITY, 0, 0);
