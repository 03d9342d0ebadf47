//! `memcpy`, `memmove` and `memset` as byte loops (word loops when addresses
//! and length are multiples of 4), instead of the word-at-a-time routines that
//! `compiler_builtins` links: on `qemu_rv32_virt` about 100 bytes instead of
//! 1.3 KB, on `nrf52840dk` about 100 bytes instead of 3.1 KB (`compiler_builtins`'
//! copies are weak symbols, so these replace them). The service copies packets
//! of at most a few hundred bytes, where the slower loop costs little.
//!
//! RISC-V: below. ARM: the micro:bit firmware's Thumb routines
//! (`baremetal-app/src/mem.rs`, with the ARM EABI aliases), which run on the
//! Cortex-M4 unchanged.

#[cfg(target_arch = "arm")]
#[path = "../../../baremetal-app/src/mem.rs"]
mod thumb;

#[cfg(target_arch = "riscv32")]
core::arch::global_asm!(
    ".section .text.zepto_mem,\"ax\",@progbits",
    ".balign 2",
    // memmove(dst a0, src a1, n a2) -> dst: last byte first (memcpy) when dst
    // lies above src, else first byte first.
    ".global memmove",
    ".type memmove, @function",
    "memmove:",
    "    bltu a1, a0, memcpy",
    "    mv a3, a0",
    "    add a2, a2, a0",
    "1:  beq a3, a2, 2f",
    "    lbu a4, 0(a1)",
    "    sb a4, 0(a3)",
    "    addi a3, a3, 1",
    "    addi a1, a1, 1",
    "    j 1b",
    "2:  ret",
    ".size memmove, . - memmove",
    // memcpy(dst a0, src a1, n a2) -> dst, last byte (or word) first: by words
    // when both addresses and the length are multiples of 4.
    ".global memcpy",
    ".type memcpy, @function",
    "memcpy:",
    "    or a3, a0, a1",
    "    or a3, a3, a2",
    "    andi a3, a3, 3",
    "    bnez a3, 3f",
    "4:  beqz a2, 2f",
    "    addi a2, a2, -4",
    "    add a4, a1, a2",
    "    lw a4, 0(a4)",
    "    add a5, a0, a2",
    "    sw a4, 0(a5)",
    "    j 4b",
    "3:  beqz a2, 2f",
    "    addi a2, a2, -1",
    "    add a4, a1, a2",
    "    lbu a4, 0(a4)",
    "    add a5, a0, a2",
    "    sb a4, 0(a5)",
    "    j 3b",
    "2:  ret",
    ".size memcpy, . - memcpy",
    // memset(dst a0, c a1, n a2) -> dst, last byte first.
    ".global memset",
    ".type memset, @function",
    "memset:",
    "1:  beqz a2, 2f",
    "    addi a2, a2, -1",
    "    add a3, a0, a2",
    "    sb a1, 0(a3)",
    "    j 1b",
    "2:  ret",
    ".size memset, . - memset",
);
