/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * Between the C side and the Rust service library (service/src/lib.rs).
 */
#ifndef ZEPTO_US_H_
#define ZEPTO_US_H_

#include <stddef.h>
#include <stdint.h>

/* Provided by the Rust library. */
size_t zepto_us_state_size(void);
int zepto_us_service_main(uint8_t *mem, size_t len);

/* Provided by service.c for the Rust library. */
int zepto_us_next_request(int32_t timeout_ms);
uint8_t *zepto_us_box(int slot, size_t *len);
void zepto_us_reply(int slot);
int64_t zepto_us_uptime_ms(void);
void zepto_us_panic(void);

/* Start of the service's state, for the isolation demonstration in main.c. */
const void *zepto_service_memory(void);

#endif /* ZEPTO_US_H_ */
