/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * C glue for the Rust application: devicetree lookups and kernel calls that the
 * `zephyr` crate does not expose (devicetree macros and syscall wrappers have no
 * Rust binding).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <zephyr/device.h>
#include <zephyr/devicetree.h>
#include <zephyr/kernel.h>
#include <zephyr/random/random.h>
#if defined(CONFIG_WATCHDOG)
#include <zephyr/drivers/watchdog.h>
#endif

#if !DT_HAS_CHOSEN(zepto_uart)
#error "Choose the UART that carries Zepto packets: chosen { zepto,uart = &uartN; } in a board overlay"
#endif

/* The UART chosen as `zepto,uart`, or NULL if its driver did not start. */
const struct device *zepto_uart_device(void)
{
	const struct device *dev = DEVICE_DT_GET(DT_CHOSEN(zepto_uart));

	return device_is_ready(dev) ? dev : NULL;
}

/* Fills buf with random bytes: 0, or -ENOTSUP when the build has no generator. */
int zepto_random_fill(uint8_t *buf, size_t len)
{
#if defined(CONFIG_CSPRNG_ENABLED)
	return sys_csrand_get(buf, len);
#elif defined(CONFIG_ENTROPY_GENERATOR) || defined(CONFIG_TEST_RANDOM_GENERATOR)
	sys_rand_get(buf, len);
	return 0;
#else
	ARG_UNUSED(buf);
	ARG_UNUSED(len);
	return -ENOTSUP;
#endif
}

#if defined(CONFIG_WATCHDOG) && DT_NODE_EXISTS(DT_ALIAS(watchdog0))
static const struct device *const wdt = DEVICE_DT_GET(DT_ALIAS(watchdog0));
static int wdt_channel = -1;

/* Arms the board's watchdog0 with timeout_ms: 0, or a negative errno. */
int zepto_watchdog_start(uint32_t timeout_ms)
{
	const struct wdt_timeout_cfg cfg = {
		.window = { .min = 0, .max = timeout_ms },
		.callback = NULL,
		.flags = WDT_FLAG_RESET_SOC,
	};
	int ch;

	if (!device_is_ready(wdt)) {
		return -ENODEV;
	}
	ch = wdt_install_timeout(wdt, &cfg);
	if (ch < 0) {
		return ch;
	}
	wdt_channel = ch;
	return wdt_setup(wdt, WDT_OPT_PAUSE_HALTED_BY_DBG);
}

void zepto_watchdog_feed(void)
{
	if (wdt_channel >= 0) {
		(void)wdt_feed(wdt, wdt_channel);
	}
}
#else
int zepto_watchdog_start(uint32_t timeout_ms)
{
	ARG_UNUSED(timeout_ms);
	return -ENOTSUP;
}

void zepto_watchdog_feed(void)
{
}
#endif
