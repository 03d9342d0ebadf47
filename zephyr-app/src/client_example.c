/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * Example local client (CONFIG_ZEPTO_CLIENT_EXAMPLE): a thread that uses the Zepto
 * service through include/zepto/service.h. It loads a program, executes it several
 * times, runs a program that sleeps (its call waits until the VM resumes), gives up on
 * one that sleeps longer than its timeout, sends one bad request, and logs every round
 * trip with its duration.
 *
 * Its lines go out with k_str_out() and the small helpers below rather than printk():
 * printk's formatter would be the only user of Zephyr's cbprintf in the image (about
 * 1.2 KB of flash, docs/zephyr.md, "Footprint").
 */
#include <string.h>

#include <zephyr/kernel.h>

#include <zepto/service.h>

#define SLOT CONFIG_ZEPTO_CLIENT_EXAMPLE_SLOT

/* EXEC 2 "68656c6c6f": the Echo body part replies "hello". */
static const uint8_t echo_hello[] = {0x02, 0x04, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f};
/* EXEC 3 "" twice: two measurements of the simulated sensor (it waits 50 ms each). */
static const uint8_t sensor_twice[] = {0x02, 0x06, 0x00, 0x02, 0x06, 0x00};
/* SLEEP 200; EXEC 1 "": wait 200 ms in the VM, then Ping. */
static const uint8_t sleep_ping[] = {0x04, 0xc8, 0x00, 0x02, 0x02, 0x00};
/* SLEEP 1500; EXEC 1 "": longer than the caller's 500 ms timeout. */
static const uint8_t long_sleep[] = {0x04, 0xdc, 0x0a, 0x02, 0x02, 0x00};
/* EXEC 9 "": no body part 9, a VM exception (UNKNOWNBODYPART). */
static const uint8_t no_such_part[] = {0x02, 0x12, 0x00};

/*
 * Console output: pieces gathered into one line (so that other threads' lines do not
 * cut into it), written out when the buffer is full and at the end of the line.
 */
static char line[80];
static size_t line_len;

static void flush(void)
{
	k_str_out(line, line_len);
	line_len = 0;
}

static void put(const char *s)
{
	for (; *s != '\0'; s++) {
		if (line_len == sizeof(line)) {
			flush();
		}
		line[line_len++] = *s;
	}
}

/* Ends the line and writes it out. */
static void put_end(void)
{
	put("\n");
	flush();
}

static void put_padded(const char *s, size_t width)
{
	size_t n = strlen(s);

	put(s);
	for (; n < width; n++) {
		put(" ");
	}
}

static void put_int(int v)
{
	char buf[12];
	char *p = buf + sizeof(buf);
	unsigned int u = v < 0 ? 0u - (unsigned int)v : (unsigned int)v;

	*--p = '\0';
	do {
		*--p = (char)('0' + u % 10u);
		u /= 10u;
	} while (u != 0u);
	if (v < 0) {
		*--p = '-';
	}
	put(p);
}

static void put_hex(uint8_t v)
{
	static const char digits[] = "0123456789abcdef";
	char buf[4] = {' ', digits[v >> 4], digits[v & 0xf], '\0'};

	put(buf);
}

static void show(const char *what, int rc, const struct zepto_reply *r, const uint8_t *data,
		 int64_t t0)
{
	int64_t ms = k_uptime_get() - t0;

	put("client: ");
	put_padded(what, 25);
	if (rc != 0) {
		put(" -> error ");
		put_int(rc);
		put(" after ");
	} else {
		put(" -> status ");
		put_int(r->status);
		put(" detail ");
		put_int(r->detail);
		put(", ");
		put_int(r->full_len);
		put(" data bytes:");
		for (uint16_t i = 0; i < r->len; i++) {
			put_hex(data[i]);
		}
		put(" (");
	}
	put_int((int)ms);
	put(rc != 0 ? " ms" : " ms)");
	put_end();
}

static void client_main(void *a, void *b, void *c)
{
	ARG_UNUSED(a);
	ARG_UNUSED(b);
	ARG_UNUSED(c);
	struct zepto_reply r;
	uint8_t data[32];
	int64_t t0;
	int rc;

	/* Let the pump start first. */
	k_sleep(K_MSEC(500));
	put("client: slot ");
	put_int(SLOT);
	put(", service calls with a 2 s timeout");
	put_end();

	t0 = k_uptime_get();
	rc = zepto_service_load(SLOT, echo_hello, sizeof(echo_hello), &r, K_SECONDS(2));
	show("load echo", rc, &r, data, t0);
	for (int i = 1; i <= 3; i++) {
		t0 = k_uptime_get();
		rc = zepto_service_execute(SLOT, data, sizeof(data), &r, K_SECONDS(2));
		show(i == 1 ? "execute #1" : i == 2 ? "execute #2" : "execute #3", rc, &r,
		     data, t0);
	}

	t0 = k_uptime_get();
	rc = zepto_service_load_execute(SLOT, sensor_twice, sizeof(sensor_twice), data,
					sizeof(data), &r, K_SECONDS(2));
	show("load+execute sensor x2", rc, &r, data, t0);

	t0 = k_uptime_get();
	rc = zepto_service_load_execute(SLOT, sleep_ping, sizeof(sleep_ping), data,
					sizeof(data), &r, K_SECONDS(2));
	show("sleep 200 ms + ping", rc, &r, data, t0);

	/* Gives up after 500 ms; the next request on the slot cancels the program. */
	t0 = k_uptime_get();
	rc = zepto_service_load_execute(SLOT, long_sleep, sizeof(long_sleep), data,
					sizeof(data), &r, K_MSEC(500));
	show("sleep 1500 ms, 500 ms tmo", rc, &r, data, t0);

	t0 = k_uptime_get();
	rc = zepto_service_load_execute(SLOT, no_such_part, sizeof(no_such_part), data,
					sizeof(data), &r, K_SECONDS(2));
	show("exec missing part", rc, &r, data, t0);

	/* A bad request: OP 7 does not exist. */
	t0 = k_uptime_get();
	rc = zepto_service_call(SLOT, 7, NULL, 0, data, sizeof(data), &r, K_SECONDS(2));
	show("bad request (op 7)", rc, &r, data, t0);

	/* A slot that does not exist is refused before it reaches the service. */
	rc = zepto_service_load(CONFIG_ZEPTO_SERVICE_SLOTS, echo_hello, sizeof(echo_hello), &r,
				K_SECONDS(2));
	put("client: slot ");
	put_int(CONFIG_ZEPTO_SERVICE_SLOTS);
	put(" (no such slot) -> ");
	put_int(rc);
	put_end();
	put("client: done");
	put_end();
}

K_THREAD_DEFINE(zepto_client_example, 1024, client_main, NULL, NULL, NULL, 7, 0, 0);
