/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * Test power-management hooks for emulated boards (CONFIG_ZEPTO_PM_TEST_HOOKS,
 * twister scenario zepto.app.pm). No QEMU-runnable SoC of Zephyr 3.7.1 selects
 * HAS_PM, so, as Zephyr's own tests/subsys/pm/power_mgmt does, the application's
 * Kconfig selects it and this file supplies the SoC part: pm_state_set() idles the
 * CPU until the next interrupt, pm_state_exit_post_ops() unlocks interrupts. The
 * power states come from pm-test.overlay.
 *
 * A test thread then checks, on the console:
 *  1. idle, the SoC enters low-power states;
 *  2. while a frame is half received, the pump holds the PM lock: no entries;
 *  3. while the network program it starts sleeps, the lock is released: entries;
 *  4. the nonces moved, and were checkpointed before low power;
 *  5. idle again, no checkpoint and no log line although the SoC keeps entering
 *     low-power states (a checkpoint only when the nonce state moved).
 */
#include <stdbool.h>
#include <stdint.h>

#include <zephyr/irq.h>
#include <zephyr/kernel.h>
#include <zephyr/pm/pm.h>
#include <zephyr/sys/printk.h>

uint32_t zepto_pm_entries(void);
uint32_t zepto_pm_entries_while_held(void);
uint32_t zepto_pm_checkpoints(void);
int zepto_pm_test_feed(int part);
bool zepto_device_ready(void);

void pm_state_set(enum pm_state state, uint8_t substate_id)
{
	ARG_UNUSED(state);
	ARG_UNUSED(substate_id);
	/* Stands in for the SoC's sleep instruction: wait for the next interrupt. */
	k_cpu_idle();
}

void pm_state_exit_post_ops(enum pm_state state, uint8_t substate_id)
{
	ARG_UNUSED(state);
	ARG_UNUSED(substate_id);
	/* pm_system_suspend() is entered with interrupts locked. */
	irq_unlock(0);
}

static bool check(bool ok, const char *what)
{
	printk("pm-test: %s: %s\n", what, ok ? "ok" : "FAILED");
	return ok;
}

/* Low-power entries during the next ms milliseconds. */
static uint32_t entries_during(int32_t ms)
{
	uint32_t e0 = zepto_pm_entries();

	k_sleep(K_MSEC(ms));
	return zepto_pm_entries() - e0;
}

static void pm_test(void)
{
	bool ok = true;
	uint32_t n, c0;

	/* A blank start at the host clock's floor waits for the clock (in host time,
	 * which QEMU's -icount ... sleep=off leaves far behind the guest's uptime).
	 */
	while (!zepto_device_ready()) {
		k_sleep(K_MSEC(10));
	}
	k_sleep(K_MSEC(100));
	/* The pump is up and idle by now. */
	n = entries_during(500);
	printk("pm-test: idle 500 ms: %u low-power entries\n", n);
	ok &= check(n > 0, "idle SoC enters low-power states");

	ok &= check(zepto_pm_test_feed(0) == 0, "first half of a command frame fed");
	n = entries_during(300);
	printk("pm-test: half a frame received, 300 ms: %u low-power entries\n", n);
	ok &= check(n == 0, "PM lock held while a frame is half received");

	c0 = zepto_pm_checkpoints();
	(void)zepto_pm_test_feed(1);
	n = entries_during(100);
	printk("pm-test: program sleeping, 100 ms: %u low-power entries\n", n);
	ok &= check(n > 0, "PM lock released while the program sleeps");
	k_sleep(K_MSEC(500));
	printk("pm-test: command done: %u nonce checkpoints\n", zepto_pm_checkpoints() - c0);
	ok &= check(zepto_pm_checkpoints() > c0, "nonces checkpointed before low power");

	c0 = zepto_pm_checkpoints();
	n = entries_during(2000);
	printk("pm-test: idle 2000 ms: %u low-power entries, %u checkpoints\n", n,
	       zepto_pm_checkpoints() - c0);
	ok &= check(n > 0 && zepto_pm_checkpoints() == c0, "no checkpoint while nothing moved");

	n = zepto_pm_entries_while_held();
	printk("pm-test: %u low-power entries while the pump held the lock\n", n);
	ok &= check(n == 0, "no entry under the lock");
	printk("pm-test: %s\n", ok ? "PASSED" : "FAILED");
}

K_THREAD_DEFINE(zepto_pm_test, 4096, pm_test, NULL, NULL, NULL, 7, 0, 1000);
