/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * Zepto service for local clients: other threads of the application load Zepto VM
 * programs into their own slot and execute them; the pump thread runs them in the
 * service's VM (zepto-kernel's `service` module; byte layouts in docs/service.md).
 *
 * Each client thread uses its own slot number, 0 .. CONFIG_ZEPTO_SERVICE_SLOTS - 1.
 * One call at a time per slot; calls on different slots may run concurrently (while
 * the VM runs one slot's waiting program, the others get ZEPTO_STATUS_BUSY).
 */
#ifndef ZEPTO_SERVICE_H_
#define ZEPTO_SERVICE_H_

#include <stddef.h>
#include <stdint.h>

#include <zephyr/kernel.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Operations (the OP byte of a request). */
enum zepto_op {
	/** Store the program in the slot, replacing the one there. */
	ZEPTO_OP_LOAD = 0,
	/** Run the program stored in the slot. */
	ZEPTO_OP_EXECUTE = 1,
	/** Store the program, then run it. */
	ZEPTO_OP_LOAD_EXECUTE = 2,
};

/** Reply status (the STATUS byte of a reply; see docs/service.md). */
enum zepto_status {
	ZEPTO_STATUS_OK = 0,           /**< done; data = the VM's reply (empty for LOAD) */
	ZEPTO_STATUS_VM_EXCEPTION = 1, /**< detail = exception code, data = its reply */
	ZEPTO_STATUS_UNKNOWN_OP = 2,   /**< detail = the OP byte */
	ZEPTO_STATUS_MALFORMED = 3,    /**< bad request layout */
	ZEPTO_STATUS_TOO_BIG = 4,      /**< detail 0: program > slot; 1: reply cut */
	ZEPTO_STATUS_NO_PROGRAM = 5,   /**< EXECUTE with nothing loaded */
	ZEPTO_STATUS_BUSY = 6,         /**< the VM runs another slot's program */
	ZEPTO_STATUS_INTERNAL = 8,     /**< the service failed locally */
	ZEPTO_STATUS_NO_SLOT = 9,      /**< slot beyond the service's table */
};

/** A reply: its header and how many DATA bytes were copied out. */
struct zepto_reply {
	uint8_t status;   /**< enum zepto_status */
	uint8_t detail;   /**< status-specific detail */
	uint16_t len;     /**< DATA bytes copied to the caller's buffer */
	uint16_t full_len;/**< DATA bytes in the reply (more than len if the buffer was short) */
};

/**
 * Sends one request from slot @p slot and waits for its final reply.
 *
 * A program that waits (SLEEP, a waiting plugin) keeps the call waiting until it ends.
 *
 * @param slot     the caller's slot
 * @param op       enum zepto_op
 * @param program  program bytes (NULL if @p len is 0)
 * @param len      program length
 * @param data     where the reply's DATA goes (may be NULL if @p cap is 0)
 * @param cap      size of @p data
 * @param reply    filled with the reply header
 * @param timeout  how long to wait for the reply
 *
 * @retval 0        a reply arrived; see reply->status
 * @retval -EINVAL  bad slot or arguments
 * @retval -E2BIG   the request does not fit CONFIG_ZEPTO_SERVICE_BUFFER_SIZE
 * @retval -EBUSY   another call on this slot is in progress
 * @retval -EAGAIN  no reply within @p timeout (a late reply is dropped; the next
 *                  request on the slot cancels a program still running for it)
 */
int zepto_service_call(unsigned int slot, uint8_t op, const uint8_t *program, size_t len,
		       uint8_t *data, size_t cap, struct zepto_reply *reply, k_timeout_t timeout);

/** Same as zepto_service_call() with the timeout in milliseconds (< 0: forever). */
int zepto_service_call_ms(unsigned int slot, uint8_t op, const uint8_t *program, size_t len,
			  uint8_t *data, size_t cap, struct zepto_reply *reply, int32_t timeout_ms);

/** Loads @p program into @p slot. */
static inline int zepto_service_load(unsigned int slot, const uint8_t *program, size_t len,
				     struct zepto_reply *reply, k_timeout_t timeout)
{
	return zepto_service_call(slot, ZEPTO_OP_LOAD, program, len, NULL, 0, reply, timeout);
}

/** Executes the program loaded in @p slot; its reply goes to @p data. */
static inline int zepto_service_execute(unsigned int slot, uint8_t *data, size_t cap,
					struct zepto_reply *reply, k_timeout_t timeout)
{
	return zepto_service_call(slot, ZEPTO_OP_EXECUTE, NULL, 0, data, cap, reply, timeout);
}

/** Loads @p program into @p slot and executes it. */
static inline int zepto_service_load_execute(unsigned int slot, const uint8_t *program,
					     size_t len, uint8_t *data, size_t cap,
					     struct zepto_reply *reply, k_timeout_t timeout)
{
	return zepto_service_call(slot, ZEPTO_OP_LOAD_EXECUTE, program, len, data, cap, reply,
				  timeout);
}

#ifdef __cplusplus
}
#endif

#endif /* ZEPTO_SERVICE_H_ */
