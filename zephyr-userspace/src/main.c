/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * Client threads of the Zepto service, each in its own memory domain.
 *
 * With CONFIG_USERSPACE every client runs in user mode. Its domain holds only its own
 * partition (its request buffer); the kernel objects it may use are only its ticket.
 * The service's partition is in no client's domain:
 *
 *   A  is served, then reads the service's state directly: the MPU stops it;
 *   C  is served, then passes the service's state as its buffer: the system call
 *      refuses it;
 *   D  uses B's ticket, which it was not granted: the system call refuses it;
 *   B  is served after all that.
 *
 * Without CONFIG_USERSPACE (no MPU) the same code runs with supervisor threads: A's
 * read succeeds and D is served with B's ticket, and the program says so; C skips its
 * call, whose reply would overwrite the service's state.
 */
#include <zephyr/app_memory/app_memdomain.h>
#include <zephyr/fatal.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>
#include <string.h>

#include <zepto_service.h>

#include "zepto_us.h"

#define STACK 1024
#define PRIORITY 7

#ifdef CONFIG_USERSPACE
K_APPMEM_PARTITION_DEFINE(part_a);
K_APPMEM_PARTITION_DEFINE(part_b);
K_APPMEM_PARTITION_DEFINE(part_c);
K_APPMEM_PARTITION_DEFINE(part_d);
#define MEM_A K_APP_DMEM(part_a)
#define MEM_B K_APP_DMEM(part_b)
#define MEM_C K_APP_DMEM(part_c)
#define MEM_D K_APP_DMEM(part_d)
#else
#define MEM_A
#define MEM_B
#define MEM_C
#define MEM_D
#endif

/* Request buffers, one per client, each in its client's partition. */
MEM_A static uint8_t buf_a[32] = {1};
MEM_B static uint8_t buf_b[32] = {1};
MEM_C static uint8_t buf_c[32] = {1};
MEM_D static uint8_t buf_d[32] = {1};

/* Requests (docs/service.md): LOAD_AND_EXECUTE "EXEC 1" (Ping, body part 1), EXECUTE,
 * LOAD_AND_EXECUTE "EXEC 2 'hi'" (Echo, body part 2), and LOAD_AND_EXECUTE
 * "SLEEP 200; PUSHREPLY 42; EXIT ISLAST" (answered when the program ends).
 */
static const uint8_t LOAD_EXEC_PING[] = {0x02, 0x03, 0x00, 0x02, 0x02, 0x00};
static const uint8_t EXECUTE[] = {0x01, 0x00, 0x00};
static const uint8_t LOAD_EXEC_ECHO[] = {0x02, 0x05, 0x00, 0x02, 0x04, 0x02, 'h', 'i'};
static const uint8_t LOAD_EXEC_SLEEP[] = {0x02, 0x08, 0x00, 0x04, 0xc8, 0x00,
					  0x03, 0x01, 0x42, 0x08, 0x02};

K_THREAD_STACK_DEFINE(stack_a, STACK);
K_THREAD_STACK_DEFINE(stack_b, STACK);
K_THREAD_STACK_DEFINE(stack_c, STACK);
K_THREAD_STACK_DEFINE(stack_d, STACK);
static struct k_thread thread_a, thread_b, thread_c, thread_d;

static void show(const char *who, const uint8_t *buf, int n)
{
	printk("%s: reply (%d B):", who, n);
	for (int i = 0; i < n; i++) {
		printk(" %02x", buf[i]);
	}
	printk("\n");
}

static void call(const char *who, struct k_sem *ticket, uint8_t *buf, size_t cap,
		 const uint8_t *req, size_t len)
{
	memcpy(buf, req, len);
	show(who, buf, zepto_call(ticket, buf, cap));
}

static void client_a(void *ticket, void *service_mem, void *p3)
{
	ARG_UNUSED(p3);
	printk("A: user mode: %s\n", k_is_user_context() ? "yes" : "no");
	call("A", ticket, buf_a, sizeof(buf_a), LOAD_EXEC_PING, sizeof(LOAD_EXEC_PING));
	call("A", ticket, buf_a, sizeof(buf_a), EXECUTE, sizeof(EXECUTE));
	printk("A: reading the service's state at %p\n", service_mem);
	uint8_t v = *(volatile const uint8_t *)service_mem;
	printk("A: read %02x: the service's memory is NOT protected here\n", v);
}

static void client_c(void *ticket, void *service_mem, void *p3)
{
	ARG_UNUSED(p3);
	call("C", ticket, buf_c, sizeof(buf_c), LOAD_EXEC_PING, sizeof(LOAD_EXEC_PING));
	if (!IS_ENABLED(CONFIG_USERSPACE)) {
		printk("C: no memory protection: not passing the service's state as my buffer"
		       " (the reply would overwrite it)\n");
		return;
	}
	printk("C: calling the service with the service's state as my buffer\n");
	int n = zepto_call(ticket, service_mem, 16);

	printk("C: call returned %d: the buffer was NOT checked here\n", n);
}

static void client_d(void *foreign_ticket, void *p2, void *p3)
{
	ARG_UNUSED(p2);
	ARG_UNUSED(p3);
	printk("D: calling the service with B's ticket\n");
	call("D", foreign_ticket, buf_d, sizeof(buf_d), LOAD_EXEC_PING, sizeof(LOAD_EXEC_PING));
	printk("D: the ticket was NOT checked here\n");
}

static void client_b(void *ticket, void *p2, void *p3)
{
	ARG_UNUSED(p2);
	ARG_UNUSED(p3);
	k_msleep(300);
	call("B", ticket, buf_b, sizeof(buf_b), LOAD_EXEC_PING, sizeof(LOAD_EXEC_PING));
	call("B", ticket, buf_b, sizeof(buf_b), LOAD_EXEC_ECHO, sizeof(LOAD_EXEC_ECHO));
	int64_t t0 = k_uptime_get();

	call("B", ticket, buf_b, sizeof(buf_b), LOAD_EXEC_SLEEP, sizeof(LOAD_EXEC_SLEEP));
	printk("B: the sleeping program took %d ms\n", (int)(k_uptime_get() - t0));
}

void k_sys_fatal_error_handler(unsigned int reason, const struct arch_esf *esf)
{
	ARG_UNUSED(esf);
	struct k_thread *t = k_current_get();

	if (t == &thread_a || t == &thread_b || t == &thread_c || t == &thread_d) {
		printk("zepto: client %s stopped (fatal error %u); the service goes on\n",
		       k_thread_name_get(t), reason);
		return; /* the kernel aborts the faulting thread */
	}
	printk("zepto: fatal error %u outside a client: halting\n", reason);
	k_fatal_halt(reason);
}

#ifdef CONFIG_USERSPACE
static struct k_mem_domain dom_a, dom_b, dom_c, dom_d;

static void isolate(struct k_mem_domain *dom, struct k_mem_partition *part, k_tid_t t)
{
	struct k_mem_partition *parts[] = {part};

	if (k_mem_domain_init(dom, ARRAY_SIZE(parts), parts) != 0 ||
	    k_mem_domain_add_thread(dom, t) != 0) {
		printk("zepto: memory domain setup failed\n");
		k_panic();
	}
}
#endif

static k_tid_t spawn(struct k_thread *t, k_thread_stack_t *stack, k_thread_entry_t entry,
		     const char *name, void *p1, void *p2)
{
	k_tid_t tid = k_thread_create(t, stack, STACK, entry, p1, p2, NULL, PRIORITY,
				      K_USER, K_FOREVER);

	k_thread_name_set(tid, name);
	return tid;
}

int main(void)
{
	void *svc = (void *)zepto_service_memory();
	k_tid_t a = spawn(&thread_a, stack_a, client_a, "A", zepto_ticket(0), svc);
	k_tid_t b = spawn(&thread_b, stack_b, client_b, "B", zepto_ticket(1), NULL);
	k_tid_t c = spawn(&thread_c, stack_c, client_c, "C", zepto_ticket(2), svc);
	k_tid_t d = spawn(&thread_d, stack_d, client_d, "D", zepto_ticket(1), NULL);

#ifdef CONFIG_USERSPACE
	isolate(&dom_a, &part_a, a);
	isolate(&dom_b, &part_b, b);
	isolate(&dom_c, &part_c, c);
	isolate(&dom_d, &part_d, d);
#endif
	/* Each client may use only its own ticket (D holds ticket 3 and tries B's). */
	k_object_access_grant(zepto_ticket(0), a);
	k_object_access_grant(zepto_ticket(1), b);
	k_object_access_grant(zepto_ticket(2), c);
	k_object_access_grant(zepto_ticket(3), d);

	printk("zepto: userspace %s; service memory at %p\n",
	       IS_ENABLED(CONFIG_USERSPACE) ? "on" : "off", svc);
	k_thread_start(a);
	k_msleep(50);
	k_thread_start(c);
	k_msleep(50);
	k_thread_start(d);
	k_thread_start(b);
	return 0;
}
