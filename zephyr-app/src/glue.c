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
#include <string.h>

#include <zephyr/device.h>
#include <zephyr/devicetree.h>
#include <zephyr/kernel.h>
#include <zephyr/random/random.h>
#include <zephyr/sys/util.h>
#if defined(CONFIG_WATCHDOG)
#include <zephyr/drivers/watchdog.h>
#endif
#if defined(CONFIG_GPIO)
#include <zephyr/drivers/gpio.h>
#endif
#if defined(CONFIG_ZEPTO_STORAGE_NVS)
#include <zephyr/drivers/flash.h>
#include <zephyr/fs/nvs.h>
#include <zephyr/storage/flash_map.h>
#endif
#if defined(CONFIG_SEMIHOST)
#include <zephyr/arch/common/semihost.h>
#endif
#if defined(CONFIG_PM)
#include <zephyr/pm/pm.h>
#include <zephyr/pm/policy.h>
#endif

/*
 * The pump thread (zephyr-app/src/lib.rs, zepto_pump_entry): defined here rather
 * than through the zephyr crate's thread support, whose thread pool and start-up
 * code cost flash and stack; created at boot, started by rust_main after its first
 * console line.
 */
void zepto_pump_entry(void);

static void zepto_pump_thread(void *p1, void *p2, void *p3)
{
	ARG_UNUSED(p1);
	ARG_UNUSED(p2);
	ARG_UNUSED(p3);
	zepto_pump_entry();
}

K_THREAD_DEFINE(zepto_pump, CONFIG_ZEPTO_PUMP_STACK_SIZE, zepto_pump_thread, NULL, NULL, NULL,
		CONFIG_ZEPTO_PUMP_PRIORITY, 0, SYS_FOREVER_MS);

void zepto_pump_start(void)
{
	k_thread_start(zepto_pump);
}

#if defined(CONFIG_ZEPTO_TRANSPORT_UART)
#if !DT_HAS_CHOSEN(zepto_uart)
#error "Choose the UART that carries Zepto packets: chosen { zepto,uart = &uartN; } in a board overlay"
#endif

/* The UART chosen as `zepto,uart`, or NULL if its driver did not start. */
const struct device *zepto_uart_device(void)
{
	const struct device *dev = DEVICE_DT_GET(DT_CHOSEN(zepto_uart));

	return device_is_ready(dev) ? dev : NULL;
}
#endif

/*
 * Fills buf with random bytes: 0, or -ENOTSUP when the build has no generator.
 * Asks for 4 bytes at a time: native_sim's test entropy driver copies whole C longs
 * from random(), whose upper 33 bits are 0, so an 8-byte request gets 4 zero bytes
 * (and the nonce store's random start would span 2^31 instead of 2^45).
 */
int zepto_random_fill(uint8_t *buf, size_t len)
{
#if defined(CONFIG_CSPRNG_ENABLED)
	for (size_t i = 0; i < len; i += 4) {
		int err = sys_csrand_get(buf + i, MIN(4, len - i));

		if (err != 0) {
			return err;
		}
	}
	return 0;
#elif defined(CONFIG_ENTROPY_GENERATOR) || defined(CONFIG_TEST_RANDOM_GENERATOR)
	for (size_t i = 0; i < len; i += 4) {
		sys_rand_get(buf + i, MIN(4, len - i));
	}
	return 0;
#else
	ARG_UNUSED(buf);
	ARG_UNUSED(len);
	return -ENOTSUP;
#endif
}

/*
 * The wall clock the blank-start policy trusts (CONFIG_ZEPTO_BLANK_START_HOST_CLOCK):
 * the host's, through ARM semihosting SYS_TIME (seconds since 1970, 32 bits unsigned,
 * so it reads right until 2106). 0 with *secs set, or -ENOTSUP.
 */
int zepto_wall_clock_s(uint64_t *secs)
{
#if defined(CONFIG_ZEPTO_BLANK_START_HOST_CLOCK)
	*secs = (uint32_t)semihost_exec(SEMIHOST_TIME, NULL);
	return 0;
#else
	ARG_UNUSED(secs);
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

/*
 * Pump wake-up: one semaphore (limit 1) that the UART receive interrupt, GPIO pin
 * interrupts, local clients and the PM notifier give, and the pump thread takes with
 * the timeout its next wait needs. Statically initialised, so any context may give
 * it at any time, also before the pump thread runs.
 */
K_SEM_DEFINE(zepto_wake_sem, 0, 1);

void zepto_wake_give(void)
{
	k_sem_give(&zepto_wake_sem);
}

/* Waits for a wake-up: 0, or -EAGAIN at the timeout (ms < 0 waits forever). */
int zepto_wake_take(int32_t ms)
{
	/* 32-bit conversion: no 64-bit division routine where ticks divide 1000 ms. */
	return k_sem_take(&zepto_wake_sem, ms < 0 ? K_FOREVER : K_TICKS(k_ms_to_ticks_ceil32(ms)));
}

/*
 * Zepto pins: the GPIOs listed in the `zepto-gpios` property of the devicetree's
 * /zephyr,user node, in order (Zepto pin 0 = first entry). Boards without it have
 * no pins: every pin access fails with -ENOTSUP.
 */
#if defined(CONFIG_GPIO) && DT_NODE_HAS_PROP(DT_PATH(zephyr_user), zepto_gpios)
#define ZEPTO_PIN_SPEC(node, prop, idx) GPIO_DT_SPEC_GET_BY_IDX(node, prop, idx)
static const struct gpio_dt_spec zepto_pins[] = {
	DT_FOREACH_PROP_ELEM_SEP(DT_PATH(zephyr_user), zepto_gpios, ZEPTO_PIN_SPEC, (,))
};
#define ZEPTO_NPINS ARRAY_SIZE(zepto_pins)
static bool zepto_pin_is_output[ZEPTO_NPINS];
static struct gpio_callback zepto_pin_cb[ZEPTO_NPINS];

static void zepto_pin_changed(const struct device *port, struct gpio_callback *cb,
			      gpio_port_pins_t pins)
{
	ARG_UNUSED(port);
	ARG_UNUSED(cb);
	ARG_UNUSED(pins);
	k_sem_give(&zepto_wake_sem);
}

/* Configures every pin as an input that wakes the pump on any edge; returns the
 * number of pins.
 */
int zepto_pins_init(void)
{
	for (size_t i = 0; i < ZEPTO_NPINS; i++) {
		const struct gpio_dt_spec *p = &zepto_pins[i];

		if (!gpio_is_ready_dt(p) || gpio_pin_configure_dt(p, GPIO_INPUT) != 0) {
			continue;
		}
		gpio_init_callback(&zepto_pin_cb[i], zepto_pin_changed, BIT(p->pin));
		if (gpio_add_callback_dt(p, &zepto_pin_cb[i]) == 0) {
			(void)gpio_pin_interrupt_configure_dt(p, GPIO_INT_EDGE_BOTH);
		}
	}
	return (int)ZEPTO_NPINS;
}

int zepto_pin_read(uint8_t pin)
{
	if (pin >= ZEPTO_NPINS) {
		return -ENOTSUP;
	}
	return gpio_pin_get_dt(&zepto_pins[pin]);
}

int zepto_pin_write(uint8_t pin, int value)
{
	if (pin >= ZEPTO_NPINS) {
		return -ENOTSUP;
	}
	if (!zepto_pin_is_output[pin]) {
		int err = gpio_pin_configure_dt(&zepto_pins[pin], GPIO_OUTPUT | GPIO_INPUT);

		if (err != 0) {
			return err;
		}
		zepto_pin_is_output[pin] = true;
	}
	return gpio_pin_set_dt(&zepto_pins[pin], value);
}
#else
int zepto_pins_init(void)
{
	return 0;
}

int zepto_pin_read(uint8_t pin)
{
	ARG_UNUSED(pin);
	return -ENOTSUP;
}

int zepto_pin_write(uint8_t pin, int value)
{
	ARG_UNUSED(pin);
	ARG_UNUSED(value);
	return -ENOTSUP;
}
#endif

/*
 * Nonce storage: a small byte array (a few granules of ZEPTO_GRANULE bytes) kept in
 *  - NVS on the devicetree's `storage_partition` (CONFIG_ZEPTO_STORAGE_NVS), one NVS
 *    entry per granule, so each granule write is atomic and wear-levelled; or
 *  - a host file through ARM semihosting (CONFIG_ZEPTO_STORAGE_SEMIHOST: QEMU with
 *    `-semihosting-config enable=on,target=native`); or
 *  - nothing: zepto_storage_open() fails and the network device does not start.
 * Bytes never written read as 0xFF (erased flash).
 */
#define ZEPTO_GRANULE 16
#define ZEPTO_STORAGE_SIZE (4 * ZEPTO_GRANULE)

#if defined(CONFIG_ZEPTO_STORAGE_NVS)
#define ZEPTO_NVS_ID_BASE 0x5a00
static struct nvs_fs zepto_nvs;

static int storage_backend_open(void)
{
	struct flash_pages_info info;
	int err;

	zepto_nvs.flash_device = FIXED_PARTITION_DEVICE(storage_partition);
	if (!device_is_ready(zepto_nvs.flash_device)) {
		return -ENODEV;
	}
	zepto_nvs.offset = FIXED_PARTITION_OFFSET(storage_partition);
	err = flash_get_page_info_by_offs(zepto_nvs.flash_device, zepto_nvs.offset, &info);
	if (err != 0) {
		return err;
	}
	zepto_nvs.sector_size = info.size;
	zepto_nvs.sector_count = MIN(FIXED_PARTITION_SIZE(storage_partition) / info.size, 8);
	if (zepto_nvs.sector_count < 2) {
		return -ENOSPC;
	}
	err = nvs_mount(&zepto_nvs);
	return err == 0 ? 1 : err;
}

static int granule_read(size_t g, uint8_t *buf)
{
	ssize_t n = nvs_read(&zepto_nvs, ZEPTO_NVS_ID_BASE + g, buf, ZEPTO_GRANULE);

	if (n == -ENOENT) {
		memset(buf, 0xff, ZEPTO_GRANULE);
		return 0;
	}
	return n == ZEPTO_GRANULE ? 0 : -EIO;
}

static int granule_write(size_t g, const uint8_t *buf)
{
	ssize_t n = nvs_write(&zepto_nvs, ZEPTO_NVS_ID_BASE + g, buf, ZEPTO_GRANULE);

	/* 0: the entry already held these bytes. */
	return (n == ZEPTO_GRANULE || n == 0) ? 0 : -EIO;
}
#elif defined(CONFIG_ZEPTO_STORAGE_SEMIHOST)
/* ZEPTO_SEMIHOST_PATH: the absolute host path fixed by the build (CMakeLists.txt). */
static long zepto_semihost_fd = -1;

const char *zepto_storage_path(void)
{
	return ZEPTO_SEMIHOST_PATH;
}

static int storage_backend_open(void)
{
	zepto_semihost_fd = semihost_open(ZEPTO_SEMIHOST_PATH, SEMIHOST_OPEN_RB_PLUS);
	if (zepto_semihost_fd < 0) {
		/* First start: create the file. */
		zepto_semihost_fd = semihost_open(ZEPTO_SEMIHOST_PATH, SEMIHOST_OPEN_WB_PLUS);
	}
	return zepto_semihost_fd < 0 ? -EIO : 2;
}

static int granule_read(size_t g, uint8_t *buf)
{
	long len = semihost_flen(zepto_semihost_fd);
	long off = (long)(g * ZEPTO_GRANULE);

	memset(buf, 0xff, ZEPTO_GRANULE);
	if (len < off + ZEPTO_GRANULE) {
		return 0;
	}
	if (semihost_seek(zepto_semihost_fd, off) != 0) {
		return -EIO;
	}
	return semihost_read(zepto_semihost_fd, buf, ZEPTO_GRANULE) == ZEPTO_GRANULE ? 0 : -EIO;
}

static int granule_write(size_t g, const uint8_t *buf)
{
	long len = semihost_flen(zepto_semihost_fd);
	long off = (long)(g * ZEPTO_GRANULE);
	static const uint8_t erased[ZEPTO_GRANULE] = {
		[0 ... ZEPTO_GRANULE - 1] = 0xff,
	};

	if (len < 0) {
		return -EIO;
	}
	/* Fill a gap before this granule with erased bytes. */
	for (; len < off; len += ZEPTO_GRANULE) {
		if (semihost_seek(zepto_semihost_fd, len) != 0 ||
		    semihost_write(zepto_semihost_fd, erased, ZEPTO_GRANULE) != 0) {
			return -EIO;
		}
	}
	if (semihost_seek(zepto_semihost_fd, off) != 0) {
		return -EIO;
	}
	return semihost_write(zepto_semihost_fd, buf, ZEPTO_GRANULE) == 0 ? 0 : -EIO;
}
#else
static int storage_backend_open(void)
{
	return -ENOTSUP;
}

static int granule_read(size_t g, uint8_t *buf)
{
	ARG_UNUSED(g);
	ARG_UNUSED(buf);
	return -ENOTSUP;
}

static int granule_write(size_t g, const uint8_t *buf)
{
	ARG_UNUSED(g);
	ARG_UNUSED(buf);
	return -ENOTSUP;
}
#endif

#if !defined(CONFIG_ZEPTO_STORAGE_SEMIHOST)
/* Host path of the records: only semihosting has one. */
const char *zepto_storage_path(void)
{
	return "";
}
#endif

static bool zepto_storage_ok;

/*
 * Opens the storage: 1 = NVS, 2 = semihosting file, or a negative errno (no
 * storage). *size and *granule get its size and write granularity.
 */
int zepto_storage_open(size_t *size, size_t *granule)
{
	int kind = storage_backend_open();

	zepto_storage_ok = kind > 0;
	*size = zepto_storage_ok ? ZEPTO_STORAGE_SIZE : 0;
	*granule = ZEPTO_GRANULE;
	return kind;
}

static int storage_access(size_t addr, uint8_t *rd, const uint8_t *wr, size_t len)
{
	uint8_t g[ZEPTO_GRANULE];

	if (!zepto_storage_ok) {
		return -ENOTSUP;
	}
	if (addr > ZEPTO_STORAGE_SIZE || len > ZEPTO_STORAGE_SIZE - addr) {
		return -EINVAL;
	}
	while (len > 0) {
		size_t idx = addr / ZEPTO_GRANULE;
		size_t in = addr % ZEPTO_GRANULE;
		size_t n = MIN(len, ZEPTO_GRANULE - in);
		int err = granule_read(idx, g);

		if (err != 0) {
			return err;
		}
		if (rd != NULL) {
			memcpy(rd, g + in, n);
			rd += n;
		} else {
			memcpy(g + in, wr, n);
			err = granule_write(idx, g);
			if (err != 0) {
				return err;
			}
			wr += n;
		}
		addr += n;
		len -= n;
	}
	return 0;
}

int zepto_storage_read(size_t addr, uint8_t *buf, size_t len)
{
	return storage_access(addr, buf, NULL, len);
}

/* Writes go straight to the medium (NVS entry or host file): flush has nothing to do. */
int zepto_storage_write(size_t addr, const uint8_t *data, size_t len)
{
	return storage_access(addr, NULL, data, len);
}

/*
 * Power management. While the pump works (a frame is being received, a program
 * runs) it holds a policy lock on the deep states, so the PM subsystem does not
 * suspend the SoC under it; it releases the lock when it goes to sleep (idle, or a
 * program waiting in SLEEP / MCUSLEEP), after writing the exact nonces if they moved.
 * A notifier counts low-power entries and, only while the stored nonces are not
 * exact (that checkpoint failed), asks the pump to try again: waking it on every
 * entry would make an idle system spin between the pump and the idle thread.
 * Without CONFIG_PM these are no-ops.
 */
#if defined(CONFIG_PM)
static const enum pm_state zepto_locked_states[] = {
	PM_STATE_SUSPEND_TO_IDLE, PM_STATE_STANDBY, PM_STATE_SUSPEND_TO_RAM,
	PM_STATE_SUSPEND_TO_DISK, PM_STATE_SOFT_OFF,
};
static atomic_t zepto_pm_held;
static atomic_t zepto_nonces_dirty;
static atomic_t zepto_checkpoint_req;
static atomic_t zepto_pm_entry_count;
static atomic_t zepto_pm_held_entry_count;

void zepto_pm_hold(bool hold)
{
	if (hold == (atomic_get(&zepto_pm_held) != 0)) {
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(zepto_locked_states); i++) {
		if (hold) {
			pm_policy_state_lock_get(zepto_locked_states[i], PM_ALL_SUBSTATES);
		} else {
			pm_policy_state_lock_put(zepto_locked_states[i], PM_ALL_SUBSTATES);
		}
	}
	atomic_set(&zepto_pm_held, hold ? 1 : 0);
}

void zepto_pm_set_dirty(bool dirty)
{
	atomic_set(&zepto_nonces_dirty, dirty ? 1 : 0);
}

static void zepto_pm_entry(enum pm_state state)
{
	if (state == PM_STATE_ACTIVE || state == PM_STATE_RUNTIME_IDLE) {
		return;
	}
	atomic_inc(&zepto_pm_entry_count);
	if (atomic_get(&zepto_pm_held) != 0) {
		/* The policy chose a state the pump had locked: must never happen. */
		atomic_inc(&zepto_pm_held_entry_count);
	}
	if (atomic_get(&zepto_nonces_dirty) != 0) {
		atomic_set(&zepto_checkpoint_req, 1);
		k_sem_give(&zepto_wake_sem);
	}
}

static struct pm_notifier zepto_pm_notifier = {
	.state_entry = zepto_pm_entry,
};

void zepto_pm_init(void)
{
	pm_notifier_register(&zepto_pm_notifier);
}

bool zepto_pm_checkpoint_requested(void)
{
	return atomic_clear(&zepto_checkpoint_req) != 0;
}

/* Low-power state entries seen by the notifier since start. */
uint32_t zepto_pm_entries(void)
{
	return (uint32_t)atomic_get(&zepto_pm_entry_count);
}

/* Entries into a state while the pump held the lock on it (0 unless PM is broken). */
uint32_t zepto_pm_entries_while_held(void)
{
	return (uint32_t)atomic_get(&zepto_pm_held_entry_count);
}
#else
void zepto_pm_hold(bool hold)
{
	ARG_UNUSED(hold);
}

void zepto_pm_set_dirty(bool dirty)
{
	ARG_UNUSED(dirty);
}

void zepto_pm_init(void)
{
}

bool zepto_pm_checkpoint_requested(void)
{
	return false;
}

#endif
