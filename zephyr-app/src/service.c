/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * Local clients of the Zepto service: one mailbox per slot between a client thread
 * (zepto_service_call, include/zepto/service.h) and the pump thread, which runs the
 * requests in zepto-kernel's service (zephyr-app/src/service.rs).
 *
 * A mailbox holds one request, then its reply, in CONFIG_ZEPTO_SERVICE_BUFFER_SIZE
 * bytes. States: IDLE -> QUEUED (client wrote a request and woke the pump) -> TAKEN
 * (the pump copied it out; the program may wait) -> DONE (the pump wrote the reply and
 * gave the slot's semaphore) -> IDLE (the client copied the reply out). Every request
 * has a sequence number, so a reply to a request the client gave up on (timeout) is
 * never mistaken for the reply to a later one.
 */
#include <errno.h>
#include <string.h>

#include <zephyr/init.h>
#include <zephyr/kernel.h>
#include <zephyr/spinlock.h>
#include <zephyr/sys/byteorder.h>

#include <zepto/service.h>

#define NSLOTS CONFIG_ZEPTO_SERVICE_SLOTS
#define BUFSZ CONFIG_ZEPTO_SERVICE_BUFFER_SIZE
#define REQUEST_HEADER 3
#define REPLY_HEADER 4

enum box_state { BOX_IDLE, BOX_QUEUED, BOX_TAKEN, BOX_DONE };

struct box {
	uint8_t buf[BUFSZ];
	size_t len;
	enum box_state state;
	bool in_call;
	uint32_t seq;
	struct k_sem done;
};

static struct box boxes[NSLOTS];
static struct k_spinlock lock;

void zepto_wake_give(void);

static int boxes_init(void)
{
	for (size_t i = 0; i < NSLOTS; i++) {
		k_sem_init(&boxes[i].done, 0, 1);
	}
	return 0;
}

SYS_INIT(boxes_init, POST_KERNEL, 0);

int zepto_service_call(unsigned int slot, uint8_t op, const uint8_t *program, size_t len,
		       uint8_t *data, size_t cap, struct zepto_reply *reply, k_timeout_t timeout)
{
	struct box *b;
	k_spinlock_key_t key;
	uint32_t seq;
	size_t full;

	if (slot >= NSLOTS || reply == NULL || (len > 0 && program == NULL) ||
	    (cap > 0 && data == NULL)) {
		return -EINVAL;
	}
	if (len > BUFSZ - REQUEST_HEADER || len > UINT16_MAX) {
		return -E2BIG;
	}
	b = &boxes[slot];
	key = k_spin_lock(&lock);
	if (b->in_call) {
		k_spin_unlock(&lock, key);
		return -EBUSY;
	}
	b->in_call = true;
	b->buf[0] = op;
	sys_put_le16((uint16_t)len, &b->buf[1]);
	if (len > 0) {
		memcpy(&b->buf[REQUEST_HEADER], program, len);
	}
	b->len = REQUEST_HEADER + len;
	b->state = BOX_QUEUED;
	seq = ++b->seq;
	k_sem_reset(&b->done);
	k_spin_unlock(&lock, key);

	zepto_wake_give();
	(void)k_sem_take(&b->done, timeout);

	key = k_spin_lock(&lock);
	if (b->seq != seq || b->state != BOX_DONE) {
		/* Timed out: withdraw a request the pump has not taken yet. */
		if (b->state == BOX_QUEUED) {
			b->state = BOX_IDLE;
		}
		b->in_call = false;
		k_spin_unlock(&lock, key);
		return -EAGAIN;
	}
	reply->status = b->buf[0];
	reply->detail = b->buf[1];
	full = sys_get_le16(&b->buf[2]);
	full = MIN(full, b->len - REPLY_HEADER);
	reply->full_len = (uint16_t)full;
	reply->len = (uint16_t)MIN(full, cap);
	if (reply->len > 0) {
		memcpy(data, &b->buf[REPLY_HEADER], reply->len);
	}
	b->state = BOX_IDLE;
	b->in_call = false;
	k_spin_unlock(&lock, key);
	return 0;
}

int zepto_service_call_ms(unsigned int slot, uint8_t op, const uint8_t *program, size_t len,
			  uint8_t *data, size_t cap, struct zepto_reply *reply, int32_t timeout_ms)
{
	return zepto_service_call(slot, op, program, len, data, cap, reply,
				  timeout_ms < 0 ? K_FOREVER : K_MSEC(timeout_ms));
}

/*
 * Pump side. Copies the queued request of `slot` into buf (cap bytes) and marks it
 * taken; returns its length and its sequence number in *seq, or -ENOENT if the slot
 * has no queued request.
 */
int zepto_box_take(unsigned int slot, uint8_t *buf, size_t cap, uint32_t *seq)
{
	k_spinlock_key_t key;
	int n = -ENOENT;

	if (slot >= NSLOTS) {
		return -EINVAL;
	}
	key = k_spin_lock(&lock);
	if (boxes[slot].state == BOX_QUEUED && boxes[slot].len <= cap) {
		memcpy(buf, boxes[slot].buf, boxes[slot].len);
		n = (int)boxes[slot].len;
		*seq = boxes[slot].seq;
		boxes[slot].state = BOX_TAKEN;
	}
	k_spin_unlock(&lock, key);
	return n;
}

/*
 * Pump side. Delivers the reply (len bytes, a complete reply with its header) to the
 * request `seq` of `slot` and wakes its client; a reply to a request that was
 * withdrawn or replaced is dropped.
 */
void zepto_box_reply(unsigned int slot, uint32_t seq, const uint8_t *reply, size_t len)
{
	k_spinlock_key_t key;
	bool wake = false;

	if (slot >= NSLOTS || len < REPLY_HEADER || len > BUFSZ) {
		return;
	}
	key = k_spin_lock(&lock);
	if (boxes[slot].seq == seq && boxes[slot].state == BOX_TAKEN) {
		memcpy(boxes[slot].buf, reply, len);
		boxes[slot].len = len;
		boxes[slot].state = BOX_DONE;
		wake = true;
	}
	k_spin_unlock(&lock, key);
	if (wake) {
		k_sem_give(&boxes[slot].done);
	}
}

/* Pump side: true if any slot has a queued request. */
bool zepto_box_any_queued(void)
{
	k_spinlock_key_t key = k_spin_lock(&lock);
	bool any = false;

	for (size_t i = 0; i < NSLOTS; i++) {
		any |= boxes[i].state == BOX_QUEUED;
	}
	k_spin_unlock(&lock, key);
	return any;
}
