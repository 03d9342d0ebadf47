//! Zepto Heap: movable blocks behind handles
//! (`reference-implementation/zepto-os.rst`, "Memory Architecture").
//!
//! One arena of `N` bytes holds at most `B` blocks (`ZEPTO_MAX_HEAP_BLOCKS`): a
//! [`HeapMem`] owns them, and lends them as one [`Heap`], a type without size
//! parameters that the layers, the VM and the plugins take. Each
//! block is owned by a [`Handle`] and holds a *request* part followed by a *reply*
//! part. When an append or prepend needs room that is not free right after the block,
//! the heap moves the growing block above the others if the room is there, else it
//! compacts all blocks and opens a gap after the growing one; so byte positions
//! change between calls. Passing a packet from layer to layer moves no bytes: a
//! layer splits off its header on the way up ([`Heap::split_request`]) and puts
//! it in front on the way down ([`Heap::wrap_request`]), and
//! [`Heap::convert_reply_to_request`] only moves the block's start.
//!
//! In C the rule "re-read pointers from handles after each call" is a convention; here
//! it is enforced by the borrow checker: the slices [`Heap::request`] and
//! [`Heap::reply`] borrow the heap, so they cannot outlive the next mutating call.
//! [`Parser`]s hold offsets relative to their block, never addresses, and carry the
//! block's generation so that a parser made before its request was replaced reports
//! [`Error::StaleParser`] instead of reading the wrong bytes.
//!
//! "Two copies" rule: at any moment a packet exists only as the current request and
//! the current reply of its block; [`Heap::convert_reply_to_request`] drops the
//! request and turns the reply into the next layer's request in place.

use core::ops::Range;

use crate::encoding;
use crate::error::Error;
use half::f16;

/// An opaque reference to one heap block (REQUEST_REPLY_HANDLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle(u8);

impl Handle {
    /// A handle of no block (every heap call with it fails).
    pub(crate) const NONE: Handle = Handle(u8::MAX);

    /// The slot index of this handle (for diagnostics).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The two parts of a heap block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The request (what the current layer reads).
    Request,
    /// The reply (what the current layer writes).
    Reply,
}

#[derive(Debug, Clone, Copy, Default)]
struct Block {
    start: u16,
    req: u16,
    rep: u16,
    used: bool,
    generation: u8,
}

impl Block {
    const fn len(&self) -> usize {
        self.req as usize + self.rep as usize
    }
    const fn end(&self) -> usize {
        self.start as usize + self.len()
    }
    /// Where one part starts in the arena, and its length.
    const fn part(&self, part: Part) -> (usize, usize) {
        match part {
            Part::Request => (self.start as usize, self.req as usize),
            Part::Reply => (self.start as usize + self.req as usize, self.rep as usize),
        }
    }
}

/// The memory of a Zepto Heap: an arena of `N` bytes and a table of at most `B`
/// blocks. It is used through [`HeapMem::heap`], which lends it as a [`Heap`].
///
/// `N` must be at most 65535 (block offsets are 16-bit, as on the MCUs this targets);
/// `B` at most 255.
#[derive(Debug, Clone)]
pub struct HeapMem<const N: usize, const B: usize> {
    arena: [u8; N],
    blocks: [Block; B],
}

impl<const N: usize, const B: usize> Default for HeapMem<N, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const B: usize> HeapMem<N, B> {
    const CHECK: () = assert!(N <= u16::MAX as usize && B <= u8::MAX as usize);

    /// The memory of an empty heap, as a constant: built where it is used (a
    /// struct expression with an array of blocks is built in a temporary first).
    const EMPTY: Self = Self {
        arena: [0; N],
        blocks: [Block {
            start: 0,
            req: 0,
            rep: 0,
            used: false,
            generation: 0,
        }; B],
    };

    /// Creates the memory of an empty heap.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self::EMPTY
    }

    /// The heap in this memory. Blocks and their bytes stay here between borrows.
    pub fn heap(&mut self) -> Heap<'_> {
        Heap {
            arena: &mut self.arena,
            blocks: &mut self.blocks,
        }
    }

    /// Arena size in bytes.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Number of allocated handles.
    pub fn handles_in_use(&self) -> usize {
        self.blocks.iter().filter(|b| b.used).count()
    }

    /// The request bytes of a block, read without borrowing the heap mutably.
    pub fn request(&self, h: Handle) -> Result<&[u8], Error> {
        self.part(h, Part::Request)
    }

    /// The reply bytes of a block, read without borrowing the heap mutably.
    pub fn reply(&self, h: Handle) -> Result<&[u8], Error> {
        self.part(h, Part::Reply)
    }

    fn part(&self, h: Handle, part: Part) -> Result<&[u8], Error> {
        let b = self
            .blocks
            .get(h.index())
            .filter(|b| b.used)
            .ok_or(Error::InvalidHandle)?;
        let (s, n) = b.part(part);
        self.arena.get(s..s + n).ok_or(Error::InvalidHandle)
    }
}

/// The Zepto Heap: an arena with a table of blocks, borrowed from a [`HeapMem`].
///
/// One concrete type whatever the sizes: every layer, the VM and every plugin take
/// `&mut Heap<'_>`, so the heap's code is built once and its small calls inline.
#[derive(Debug)]
pub struct Heap<'a> {
    arena: &'a mut [u8],
    blocks: &'a mut [Block],
}

impl Heap<'_> {
    /// Arena size in bytes.
    pub fn capacity(&self) -> usize {
        self.arena.len()
    }

    /// Bytes held by all blocks (requests plus replies).
    pub fn used_bytes(&self) -> usize {
        let mut n = 0;
        for b in self.blocks.iter() {
            if b.used {
                n += b.len();
            }
        }
        n
    }

    /// Number of allocated handles.
    pub fn handles_in_use(&self) -> usize {
        self.blocks.iter().filter(|b| b.used).count()
    }

    fn block(&self, h: Handle) -> Result<&Block, Error> {
        match self.blocks.get(h.index()) {
            Some(b) if b.used => Ok(b),
            _ => Err(Error::InvalidHandle),
        }
    }

    fn block_mut(&mut self, h: Handle) -> Result<&mut Block, Error> {
        match self.blocks.get_mut(h.index()) {
            Some(b) if b.used => Ok(b),
            _ => Err(Error::InvalidHandle),
        }
    }

    /// Ensures `extra` free bytes directly after block `i`, moving blocks if needed.
    fn make_room(&mut self, i: usize, extra: usize) -> Result<(), Error> {
        if extra == 0 {
            return Ok(());
        }
        let me = *self.blocks.get(i).ok_or(Error::InvalidHandle)?;
        let new_len = me.len().checked_add(extra).ok_or(Error::OutOfMemory)?;
        if new_len > u16::MAX as usize || self.used_bytes() + extra > self.arena.len() {
            return Err(Error::OutOfMemory);
        }
        // One scan: the highest end of the other blocks, and the lowest start after
        // this one's end.
        let (top, next) = self.around(i, self.arena.len(), me.end());
        if me.len() > 0 && next.saturating_sub(me.end()) >= extra {
            return Ok(());
        }
        // Room above the other blocks: the block goes there, and only its own bytes
        // move (an empty block just takes the place).
        if self.arena.len() - top >= new_len {
            if me.start as usize != top {
                self.arena.copy_within(me.start as usize..me.end(), top);
                if let Some(b) = self.blocks.get_mut(i) {
                    b.start = top as u16;
                }
            }
            return Ok(());
        }
        self.compact();
        // After compaction everything is packed from 0; open the gap after block `i`
        // by shifting every block that starts at or after its end. (An empty block
        // is not packed: it goes to the top, and no block starts there.)
        let me = *self.blocks.get(i).ok_or(Error::InvalidHandle)?;
        let top = self.top_excluding(usize::MAX);
        let end = if me.len() == 0 { top } else { me.end() };
        if top > end {
            self.arena.copy_within(end..top, end + extra);
        }
        for (j, b) in self.blocks.iter_mut().enumerate() {
            if j == i {
                b.start = (end - me.len()) as u16;
            } else if b.used && b.len() > 0 && b.start as usize >= end {
                b.start += extra as u16;
            }
        }
        Ok(())
    }

    /// The non-empty blocks other than `skip` around the bytes `lo..hi`: the highest
    /// end at or below `lo` (0 if none) and the lowest start at or above `hi` (the
    /// arena's end if none). One scan for every question the moves ask.
    fn around(&self, skip: usize, lo: usize, hi: usize) -> (usize, usize) {
        let (mut below, mut above) = (0, self.arena.len());
        for (j, b) in self.blocks.iter().enumerate() {
            if j == skip || !b.used || b.len() == 0 {
                continue;
            }
            if b.end() <= lo {
                below = below.max(b.end());
            }
            if b.start as usize >= hi {
                above = above.min(b.start as usize);
            }
        }
        (below, above)
    }

    /// Highest end of any non-empty block other than `skip`.
    fn top_excluding(&self, skip: usize) -> usize {
        self.around(skip, self.arena.len(), usize::MAX).0
    }

    /// Packs all non-empty blocks towards offset 0, keeping their order.
    fn compact(&mut self) {
        let mut pos = 0usize;
        // Non-empty blocks never overlap, so their starts order them: the next one
        // to pack is the lowest start at or above the end of the one packed last.
        let mut from = 0usize;
        loop {
            let mut next = None;
            let mut start = usize::MAX;
            for (j, b) in self.blocks.iter().enumerate() {
                let s = b.start as usize;
                if b.used && b.len() > 0 && s >= from && s < start {
                    (next, start) = (Some(j), s);
                }
            }
            let Some(b) = next.and_then(|j| self.blocks.get_mut(j)) else {
                break;
            };
            let len = b.len();
            b.start = pos as u16;
            if start != pos {
                self.arena.copy_within(start..start + len, pos);
            }
            pos += len;
            from = start + len;
        }
    }

    /// Replaces the request with up to `capacity` bytes written by `fill`, which
    /// returns how many it wrote. Used to receive a packet straight into the heap.
    /// On error the block is left empty (request and reply dropped).
    pub fn fill_request(
        &mut self,
        h: Handle,
        capacity: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, Error>,
    ) -> Result<usize, Error> {
        {
            let b = self.block_mut(h)?;
            b.req = 0;
            b.rep = 0;
            b.generation = b.generation.wrapping_add(1);
        }
        self.make_room(h.index(), capacity)?;
        let s = self.block(h)?.start as usize;
        let buf = self
            .arena
            .get_mut(s..s + capacity)
            .ok_or(Error::OutOfMemory)?;
        let n = fill(buf)?.min(capacity);
        self.block_mut(h)?.req = n as u16;
        Ok(n)
    }

    /// Generation of a block: changes whenever its request is replaced.
    pub fn generation(&self, h: Handle) -> Result<u8, Error> {
        Ok(self.block(h)?.generation)
    }

    /// Allocates an empty block.
    pub fn alloc(&mut self) -> Result<Handle, Error> {
        let (i, b) = self
            .blocks
            .iter_mut()
            .enumerate()
            .find(|(_, b)| !b.used)
            .ok_or(Error::NoFreeHandle)?;
        *b = Block {
            used: true,
            generation: b.generation.wrapping_add(1),
            ..Block::default()
        };
        Ok(Handle(i as u8))
    }

    /// Frees a block; its handle becomes invalid.
    pub fn free(&mut self, h: Handle) -> Result<(), Error> {
        let b = self.block_mut(h)?;
        b.used = false;
        b.req = 0;
        b.rep = 0;
        b.generation = b.generation.wrapping_add(1);
        Ok(())
    }

    /// Frees every block.
    pub fn reset(&mut self) {
        for b in self.blocks.iter_mut() {
            b.used = false;
            b.req = 0;
            b.rep = 0;
            b.generation = b.generation.wrapping_add(1);
        }
    }

    /// The request bytes of a block.
    pub fn request(&self, h: Handle) -> Result<&[u8], Error> {
        self.part(h, Part::Request)
    }

    /// The reply bytes of a block.
    pub fn reply(&self, h: Handle) -> Result<&[u8], Error> {
        self.part(h, Part::Reply)
    }

    /// One part of a block.
    fn part(&self, h: Handle, part: Part) -> Result<&[u8], Error> {
        let (s, n) = self.block(h)?.part(part);
        self.arena.get(s..s + n).ok_or(Error::InvalidHandle)
    }

    /// The request bytes of a block, mutable (e.g. to decrypt in place).
    pub fn request_mut(&mut self, h: Handle) -> Result<&mut [u8], Error> {
        self.part_mut(h, Part::Request)
    }

    /// The reply bytes of a block, mutable (e.g. to encrypt in place).
    pub fn reply_mut(&mut self, h: Handle) -> Result<&mut [u8], Error> {
        self.part_mut(h, Part::Reply)
    }

    /// One part of a block, mutable.
    fn part_mut(&mut self, h: Handle, part: Part) -> Result<&mut [u8], Error> {
        let (s, n) = self.block(h)?.part(part);
        self.arena.get_mut(s..s + n).ok_or(Error::InvalidHandle)
    }

    /// Request length in bytes.
    pub fn request_len(&self, h: Handle) -> Result<usize, Error> {
        Ok(self.block(h)?.req as usize)
    }

    /// Reply length in bytes.
    pub fn reply_len(&self, h: Handle) -> Result<usize, Error> {
        Ok(self.block(h)?.rep as usize)
    }

    /// Appends bytes to the reply.
    pub fn append_reply(&mut self, h: Handle, data: &[u8]) -> Result<(), Error> {
        self.block(h)?;
        self.make_room(h.index(), data.len())?;
        let b = self.block_mut(h)?;
        let at = b.end();
        b.rep += data.len() as u16;
        self.arena
            .get_mut(at..at + data.len())
            .ok_or(Error::OutOfMemory)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Prepends bytes to the reply (lower layers add their headers this way).
    pub fn prepend_reply(&mut self, h: Handle, data: &[u8]) -> Result<(), Error> {
        self.block(h)?;
        self.make_room(h.index(), data.len())?;
        let b = self.block_mut(h)?;
        let rs = b.start as usize + b.req as usize;
        let re = b.end();
        b.rep += data.len() as u16;
        self.arena.copy_within(rs..re, rs + data.len());
        self.arena
            .get_mut(rs..rs + data.len())
            .ok_or(Error::OutOfMemory)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Appends bytes `range` of the request or reply (`part`) of `src` to the reply of
    /// `dst`, inside the arena (no intermediate buffer). `src` may be `dst`. A range
    /// outside the part is [`Error::UnexpectedEnd`]; nothing changes on error.
    pub fn append_reply_from(
        &mut self,
        dst: Handle,
        src: Handle,
        part: Part,
        range: Range<usize>,
    ) -> Result<(), Error> {
        let s = *self.block(src)?;
        let (part_start, part_len) = match part {
            Part::Request => (0, s.req as usize),
            Part::Reply => (s.req as usize, s.rep as usize),
        };
        if range.start > range.end || range.end > part_len {
            return Err(Error::UnexpectedEnd);
        }
        let n = range.end - range.start;
        self.block(dst)?;
        self.make_room(dst.index(), n)?;
        // Blocks may have moved: offsets within `src` have not.
        let from = self.block(src)?.start as usize + part_start + range.start;
        let d = self.block_mut(dst)?;
        let to = d.end();
        d.rep += n as u16;
        self.arena.copy_within(from..from + n, to);
        Ok(())
    }

    /// Free bytes left in the arena for appends.
    pub fn free_bytes(&self) -> usize {
        self.arena.len() - self.used_bytes()
    }

    /// Appends the whole reply of `src` to the reply of `dst` (`src` is unchanged;
    /// `dst == src` is [`Error::InvalidHandle`]).
    pub fn append_reply_of(&mut self, dst: Handle, src: Handle) -> Result<(), Error> {
        if dst == src {
            return Err(Error::InvalidHandle);
        }
        let n = self.reply_len(src)?;
        self.append_reply_from(dst, src, Part::Reply, 0..n)
    }

    /// Makes the reply of `dst` a copy of the reply of `src`: [`Heap::clear_reply`]
    /// of `dst`, then [`Heap::append_reply_of`] (SAGDP keeping the packet it sent or
    /// sending it again, SACCP keeping the program). On an error the reply of `dst`
    /// is left empty.
    #[inline(never)]
    pub fn set_reply_of(&mut self, dst: Handle, src: Handle) -> Result<(), Error> {
        self.clear_reply(dst)?;
        self.append_reply_of(dst, src)
    }

    /// Shortens the reply to `len` bytes (no effect if it is already shorter).
    #[inline(never)]
    pub fn truncate_reply(&mut self, h: Handle, len: usize) -> Result<(), Error> {
        let b = self.block_mut(h)?;
        if len < usize::from(b.rep) {
            b.rep = len as u16;
        }
        Ok(())
    }

    /// Removes `n` bytes from the front of the reply.
    pub fn drop_reply_front(&mut self, h: Handle, n: usize) -> Result<(), Error> {
        let b = *self.block(h)?;
        let n = n.min(b.rep as usize);
        let rs = b.start as usize + b.req as usize;
        self.arena.copy_within(rs + n..b.end(), rs);
        self.block_mut(h)?.rep -= n as u16;
        Ok(())
    }

    /// Drops the request and makes the reply the request of the next layer
    /// (`zepto_convert_reply_to_request`); returns the new request's length.
    /// Invalidates parsers over the old request.
    pub fn convert_reply_to_request(&mut self, h: Handle) -> Result<usize, Error> {
        // The block now starts where its reply did: nothing moves, and the bytes of
        // the old request are free.
        let b = self.block_mut(h)?;
        b.start += b.req;
        b.req = b.rep;
        b.rep = 0;
        b.generation = b.generation.wrapping_add(1);
        Ok(usize::from(b.req))
    }

    /// Makes the request bytes from `at` on the reply, leaving the first `at` bytes
    /// as the request: a layer passes what follows its header up without copying
    /// it. The reply must be empty ([`Error::InvalidState`]); `at` beyond the request
    /// is [`Error::UnexpectedEnd`].
    pub fn split_request(&mut self, h: Handle, at: usize) -> Result<(), Error> {
        let b = self.block_mut(h)?;
        if b.rep != 0 {
            return Err(Error::InvalidState);
        }
        let at = u16::try_from(at)
            .ok()
            .filter(|a| *a <= b.req)
            .ok_or(Error::UnexpectedEnd)?;
        b.rep = b.req - at;
        b.req = at;
        Ok(())
    }

    /// Makes `header` followed by the request the reply, and the request empty: a
    /// layer passes its packet down. The reply must be empty
    /// ([`Error::InvalidState`]). Only the header is written when the arena has
    /// room for it just in front of the block (the bytes a layer stripped on the
    /// way up, or a request dropped by [`Heap::convert_reply_to_request`]); else
    /// the request moves. Nothing changes on error.
    pub fn wrap_request(&mut self, h: Handle, header: &[u8]) -> Result<(), Error> {
        let i = h.index();
        let me = *self.block(h)?;
        if me.rep != 0 {
            return Err(Error::InvalidState);
        }
        let n = header.len();
        let before = self.around(i, me.start as usize, usize::MAX).0;
        let at = if me.start as usize - before >= n && me.len() > 0 {
            // Free bytes in front of the block: the header goes there.
            me.start as usize - n
        } else {
            self.make_room(i, n)?;
            let s = self.block(h)?.start as usize;
            self.arena.copy_within(s..s + me.req as usize, s + n);
            s
        };
        self.arena
            .get_mut(at..at + n)
            .ok_or(Error::OutOfMemory)?
            .copy_from_slice(header);
        let b = self.block_mut(h)?;
        b.start = at as u16;
        b.rep = b.req + n as u16;
        b.req = 0;
        Ok(())
    }

    /// Replaces the request with `data` and drops the reply.
    pub fn set_request(&mut self, h: Handle, data: &[u8]) -> Result<(), Error> {
        self.fill_request(h, data.len(), |buf| {
            buf.copy_from_slice(data);
            Ok(data.len())
        })
        .map(|_| ())
    }

    /// Creates a parser over the whole request of `h` (`zepto_create_parser`).
    pub fn parser(&self, h: Handle) -> Result<Parser, Error> {
        let b = self.block(h)?;
        Ok(Parser {
            handle: h,
            generation: b.generation,
            pos: 0,
            end: b.req,
        })
    }

    /// Drops the reply and returns the request followed by `room` free bytes as one
    /// mutable slice (moving blocks if needed). The request keeps its length; the
    /// `room` bytes do not belong to the block and their contents are unspecified,
    /// so a link driver can frame the request in place there (see
    /// [`sadlp::encode_in_place`](crate::sadlp::encode_in_place)) until the next
    /// heap call.
    pub fn request_and_room_mut(&mut self, h: Handle, room: usize) -> Result<&mut [u8], Error> {
        self.block_mut(h)?.rep = 0;
        self.make_room(h.index(), room)?;
        let b = *self.block(h)?;
        let s = b.start as usize;
        let end = b
            .end()
            .checked_add(room)
            .filter(|e| *e <= self.arena.len())
            .ok_or(Error::OutOfMemory)?;
        self.arena.get_mut(s..end).ok_or(Error::OutOfMemory)
    }

    /// Appends one byte to the reply.
    pub fn append_reply_u8(&mut self, h: Handle, v: u8) -> Result<(), Error> {
        self.append_reply(h, &[v])
    }

    /// Appends a little-endian `u16` to the reply.
    pub fn append_reply_u16(&mut self, h: Handle, v: u16) -> Result<(), Error> {
        self.append_reply(h, &v.to_le_bytes())
    }

    /// Appends an Encoded-Unsigned-Int<max=`max`> to the reply.
    pub fn append_reply_uint(&mut self, h: Handle, v: u64, max: u8) -> Result<(), Error> {
        let (buf, n) = encoding::uint_to_array(v, max)?;
        self.append_reply(h, buf.get(..n).ok_or(Error::BufferTooSmall)?)
    }

    /// Prepends an Encoded-Unsigned-Int<max=`max`> to the reply.
    pub fn prepend_reply_uint(&mut self, h: Handle, v: u64, max: u8) -> Result<(), Error> {
        let (buf, n) = encoding::uint_to_array(v, max)?;
        self.prepend_reply(h, buf.get(..n).ok_or(Error::BufferTooSmall)?)
    }

    /// Appends an Encoded-Signed-Int<max=`max`> to the reply.
    pub fn append_reply_sint(&mut self, h: Handle, v: i64, max: u8) -> Result<(), Error> {
        let mut buf = [0u8; encoding::MAX_ENCODED_LEN];
        let n = encoding::encode_sint(v, max, &mut buf)?;
        self.append_reply(h, buf.get(..n).ok_or(Error::BufferTooSmall)?)
    }

    /// Appends a SmartAnthill Half-Float to the reply.
    pub fn append_reply_half(&mut self, h: Handle, v: f16) -> Result<(), Error> {
        self.append_reply(h, &encoding::encode_half(v))
    }

    /// Drops the reply.
    pub fn clear_reply(&mut self, h: Handle) -> Result<(), Error> {
        self.truncate_reply(h, 0)
    }
}

/// A cursor over (part of) the request of one heap block (ZEPTO_PARSER).
///
/// A parser is a few bytes of offsets; every read takes the heap by reference, so it
/// stays valid while blocks move. Reads past its end fail with
/// [`Error::UnexpectedEnd`] and leave the parser where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parser {
    handle: Handle,
    generation: u8,
    pos: u16,
    end: u16,
}

impl Parser {
    /// The handle whose request this parser reads.
    pub const fn handle(&self) -> Handle {
        self.handle
    }

    /// Offset of the next byte within the request.
    pub const fn position(&self) -> usize {
        self.pos as usize
    }

    /// Offset just past the last byte this parser may read.
    pub const fn end(&self) -> usize {
        self.end as usize
    }

    /// Bytes left to read.
    pub const fn remaining(&self) -> usize {
        (self.end - self.pos) as usize
    }

    /// True when nothing is left to read.
    pub const fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Moves to absolute offset `pos` within the request (must not pass the end).
    pub fn set_position(&mut self, pos: usize) -> Result<(), Error> {
        if pos > self.end as usize {
            return Err(Error::UnexpectedEnd);
        }
        self.pos = pos as u16;
        Ok(())
    }

    /// The unread bytes, borrowed from the heap.
    pub fn rest<'h>(&self, heap: &'h Heap<'_>) -> Result<&'h [u8], Error> {
        let b = heap.block(self.handle)?;
        if b.generation != self.generation {
            return Err(Error::StaleParser);
        }
        let (s, n) = b.part(Part::Request);
        heap.arena
            .get(s..s + n)
            .ok_or(Error::InvalidHandle)?
            .get(self.pos as usize..self.end as usize)
            .ok_or(Error::StaleParser)
    }

    /// Reads `n` bytes, borrowed from the heap.
    pub fn bytes<'h>(&mut self, heap: &'h Heap<'_>, n: usize) -> Result<&'h [u8], Error> {
        let out = self.rest(heap)?.get(..n).ok_or(Error::UnexpectedEnd)?;
        self.pos += n as u16;
        Ok(out)
    }

    /// Copies `out.len()` bytes into `out`.
    pub fn read_into(&mut self, heap: &Heap<'_>, out: &mut [u8]) -> Result<(), Error> {
        out.copy_from_slice(self.bytes(heap, out.len())?);
        Ok(())
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, heap: &Heap<'_>, n: usize) -> Result<(), Error> {
        self.bytes(heap, n).map(|_| ())
    }

    /// Reads one byte.
    pub fn u8(&mut self, heap: &Heap<'_>) -> Result<u8, Error> {
        let b = *self.rest(heap)?.first().ok_or(Error::UnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    /// Returns the next byte without consuming it.
    pub fn peek_u8(&self, heap: &Heap<'_>) -> Result<u8, Error> {
        self.rest(heap)?
            .first()
            .copied()
            .ok_or(Error::UnexpectedEnd)
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self, heap: &Heap<'_>) -> Result<u16, Error> {
        let v = encoding::read_u16_le(self.rest(heap)?)?;
        self.pos += 2;
        Ok(v)
    }

    /// Reads a little-endian `u32`.
    pub fn u32_le(&mut self, heap: &Heap<'_>) -> Result<u32, Error> {
        let v = encoding::read_u32_le(self.rest(heap)?)?;
        self.pos += 4;
        Ok(v)
    }

    /// Reads an Encoded-Unsigned-Int<max=`max`>.
    pub fn uint(&mut self, heap: &Heap<'_>, max: u8) -> Result<u64, Error> {
        let (v, n) = encoding::decode_uint(self.rest(heap)?, max)?;
        self.pos += n as u16;
        Ok(v)
    }

    /// Reads an Encoded-Unsigned-Int<max=2> (as [`Parser::uint`] with `max` 2).
    pub fn uint2(&mut self, heap: &Heap<'_>) -> Result<u16, Error> {
        let (v, n) = encoding::decode_uint32(self.rest(heap)?, 2)?;
        self.pos += n as u16;
        Ok(v as u16)
    }

    /// Reads an Encoded-Signed-Int<max=`max`>.
    pub fn sint(&mut self, heap: &Heap<'_>, max: u8) -> Result<i64, Error> {
        let (v, n) = encoding::decode_sint(self.rest(heap)?, max)?;
        self.pos += n as u16;
        Ok(v)
    }

    /// Reads a SmartAnthill Half-Float.
    pub fn half(&mut self, heap: &Heap<'_>) -> Result<f16, Error> {
        let v = encoding::decode_half(self.rest(heap)?)?;
        self.pos += 2;
        Ok(v)
    }

    /// Splits off the next `len` bytes as a nested parser and skips them here
    /// (`zepto_create_parser_from_parsed_block`).
    pub fn sub_parser(&mut self, len: usize) -> Result<Parser, Error> {
        if len > self.remaining() {
            return Err(Error::UnexpectedEnd);
        }
        let sub = Parser {
            handle: self.handle,
            generation: self.generation,
            pos: self.pos,
            end: self.pos + len as u16,
        };
        self.pos += len as u16;
        Ok(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type H = HeapMem<64, 4>;

    #[test]
    fn truncating_to_a_longer_length_keeps_the_reply() {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let h = heap.alloc().unwrap();
        heap.append_reply(h, &[1, 2, 3, 4, 5]).unwrap();
        // Lengths past 16 bits are longer than any reply, not taken modulo 2^16.
        for len in [5, 6, 0xffff, 0x1_0000, 0x1_0002, usize::MAX] {
            heap.truncate_reply(h, len).unwrap();
            assert_eq!(heap.reply(h).unwrap(), &[1, 2, 3, 4, 5], "length {len}");
        }
        heap.truncate_reply(h, 2).unwrap();
        assert_eq!(heap.reply(h).unwrap(), &[1, 2]);
    }

    #[test]
    fn request_reply_and_convert() {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let h = heap.alloc().unwrap();
        heap.set_request(h, &[1, 2, 3]).unwrap();
        heap.append_reply(h, &[9, 8]).unwrap();
        heap.prepend_reply(h, &[7]).unwrap();
        heap.append_reply_uint(h, 128, 2).unwrap();
        assert_eq!(heap.request(h).unwrap(), &[1, 2, 3]);
        assert_eq!(heap.reply(h).unwrap(), &[7, 9, 8, 0x80, 0x00]);
        heap.convert_reply_to_request(h).unwrap();
        assert_eq!(heap.request(h).unwrap(), &[7, 9, 8, 0x80, 0x00]);
        assert_eq!(heap.reply(h).unwrap(), &[] as &[u8]);
        // Two copies rule: only the current request (and reply) occupy the arena.
        assert_eq!(heap.used_bytes(), 5);
    }

    #[test]
    fn parser_reads_all_field_kinds() {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let h = heap.alloc().unwrap();
        heap.set_request(
            h,
            &[
                0x05, 0x34, 0x12, 0x90, 0x04, 0x01, 0x00, 0x3c, 0xaa, 0xbb, 0xcc,
            ],
        )
        .unwrap();
        let mut p = heap.parser(h).unwrap();
        assert_eq!(p.u8(&heap), Ok(5));
        assert_eq!(p.u16_le(&heap), Ok(0x1234));
        assert_eq!(p.uint(&heap, 2), Ok(656));
        assert_eq!(p.sint(&heap, 1), Ok(-1));
        assert_eq!(p.half(&heap), Ok(f16::from_f32(1.0)));
        assert_eq!(p.remaining(), 3);
        let mut sub = p.sub_parser(2).unwrap();
        assert_eq!(p.remaining(), 1);
        assert_eq!(sub.u8(&heap), Ok(0xaa));
        assert_eq!(sub.u8(&heap), Ok(0xbb));
        assert_eq!(sub.u8(&heap), Err(Error::UnexpectedEnd));
        assert_eq!(p.u8(&heap), Ok(0xcc));
        assert_eq!(p.u16_le(&heap), Err(Error::UnexpectedEnd));
        assert_eq!(p.sub_parser(1), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn parser_goes_stale_after_convert() {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let h = heap.alloc().unwrap();
        heap.set_request(h, &[1, 2]).unwrap();
        heap.append_reply(h, &[3, 4]).unwrap();
        let mut p = heap.parser(h).unwrap();
        heap.convert_reply_to_request(h).unwrap();
        assert_eq!(p.u8(&heap), Err(Error::StaleParser));
    }

    #[test]
    fn blocks_move_to_make_room() {
        let mut heap_mem = HeapMem::<16, 3>::new();
        let mut heap = heap_mem.heap();
        let a = heap.alloc().unwrap();
        let b = heap.alloc().unwrap();
        heap.append_reply(a, &[1; 4]).unwrap();
        heap.append_reply(b, &[2; 4]).unwrap();
        // `a` is followed directly by `b`: growing it must move `b`.
        heap.append_reply(a, &[3; 6]).unwrap();
        assert_eq!(heap.reply(a).unwrap(), &[1, 1, 1, 1, 3, 3, 3, 3, 3, 3]);
        assert_eq!(heap.reply(b).unwrap(), &[2; 4]);
        assert_eq!(heap.free_bytes(), 2);
        assert_eq!(heap.append_reply(b, &[0; 3]), Err(Error::OutOfMemory));
        // The failed append lost nothing.
        assert_eq!(heap.reply(b).unwrap(), &[2; 4]);
        assert_eq!(heap.reply(a).unwrap().len(), 10);
        let c = heap.alloc().unwrap();
        assert_eq!(heap.alloc(), Err(Error::NoFreeHandle));
        heap.append_reply(c, &[5, 5]).unwrap();
        heap.free(a).unwrap();
        assert_eq!(heap.reply(a), Err(Error::InvalidHandle));
        heap.append_reply(c, &[6; 10]).unwrap();
        assert_eq!(heap.reply(b).unwrap(), &[2; 4]);
        assert_eq!(heap.reply(c).unwrap().len(), 12);
    }

    #[test]
    fn append_reply_of_copies_between_blocks() {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let a = heap.alloc().unwrap();
        let b = heap.alloc().unwrap();
        heap.append_reply(a, &[1, 2]).unwrap();
        heap.append_reply(b, &[3, 4, 5]).unwrap();
        heap.append_reply_of(a, b).unwrap();
        assert_eq!(heap.reply(a).unwrap(), &[1, 2, 3, 4, 5]);
        assert_eq!(heap.reply(b).unwrap(), &[3, 4, 5]);
        assert_eq!(heap.append_reply_of(a, a), Err(Error::InvalidHandle));
        heap.drop_reply_front(a, 2).unwrap();
        assert_eq!(heap.reply(a).unwrap(), &[3, 4, 5]);
    }

    #[test]
    fn set_reply_of_replaces_the_reply() {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let a = heap.alloc().unwrap();
        let b = heap.alloc().unwrap();
        heap.set_request(a, &[9]).unwrap();
        heap.append_reply(a, &[1, 2]).unwrap();
        heap.append_reply(b, &[3, 4, 5]).unwrap();
        heap.set_reply_of(a, b).unwrap();
        assert_eq!(heap.request(a).unwrap(), &[9]);
        assert_eq!(heap.reply(a).unwrap(), &[3, 4, 5]);
        assert_eq!(heap.reply(b).unwrap(), &[3, 4, 5]);
        // A block's own reply: an error, and the reply is left empty.
        assert_eq!(heap.set_reply_of(a, a), Err(Error::InvalidHandle));
        assert_eq!(heap.reply(a).unwrap(), &[] as &[u8]);
    }

    #[test]
    fn append_reply_from_copies_inside_the_arena() {
        let mut heap_mem = HeapMem::<24, 2>::new();
        let mut heap = heap_mem.heap();
        let a = heap.alloc().unwrap();
        let b = heap.alloc().unwrap();
        heap.set_request(a, &[1, 2, 3, 4]).unwrap();
        heap.append_reply(b, &[9; 4]).unwrap();
        // A range of a block's own request into its reply.
        heap.append_reply_from(a, a, Part::Request, 1..3).unwrap();
        assert_eq!(heap.reply(a).unwrap(), &[2, 3]);
        // Another block's reply; `a` has to move past `b` to grow.
        heap.append_reply_from(a, b, Part::Reply, 0..4).unwrap();
        assert_eq!(heap.reply(a).unwrap(), &[2, 3, 9, 9, 9, 9]);
        assert_eq!(heap.reply(b).unwrap(), &[9; 4]);
        // Out of the part, or past the arena: an error that changes nothing.
        assert_eq!(
            heap.append_reply_from(a, b, Part::Reply, 2..5),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(heap.free_bytes(), 24 - 14);
        heap.append_reply(b, &[7; 10]).unwrap();
        assert_eq!(
            heap.append_reply_from(b, a, Part::Request, 0..4),
            Err(Error::OutOfMemory)
        );
        assert_eq!(heap.reply(a).unwrap(), &[2, 3, 9, 9, 9, 9]);
        assert_eq!(heap.request(a).unwrap(), &[1, 2, 3, 4]);
    }

    #[test]
    fn fill_request_receives_in_place() {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let h = heap.alloc().unwrap();
        let n = heap
            .fill_request(h, 32, |buf| {
                buf[..3].copy_from_slice(&[7, 7, 7]);
                Ok(3)
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(heap.request(h).unwrap(), &[7, 7, 7]);
        assert_eq!(heap.fill_request(h, 65, |_| Ok(0)), Err(Error::OutOfMemory));
    }

    #[test]
    fn request_and_room_leaves_other_blocks_alone() {
        let mut heap_mem = HeapMem::<32, 3>::new();
        let mut heap = heap_mem.heap();
        let a = heap.alloc().unwrap();
        let b = heap.alloc().unwrap();
        heap.set_request(a, &[1, 2, 3]).unwrap();
        heap.append_reply(a, &[9, 9]).unwrap();
        heap.set_request(b, &[4; 10]).unwrap();
        // `b` sits right after `a`: the room must be opened by moving it.
        let buf = heap.request_and_room_mut(a, 8).unwrap();
        assert_eq!(buf.len(), 11);
        assert_eq!(&buf[..3], &[1, 2, 3]);
        buf[3..].fill(0x77);
        assert_eq!(heap.request(a).unwrap(), &[1, 2, 3]);
        assert_eq!(heap.reply(a).unwrap(), &[] as &[u8]);
        assert_eq!(heap.request(b).unwrap(), &[4; 10]);
        assert_eq!(heap.used_bytes(), 13);
        // More room than the arena has left.
        assert_eq!(heap.request_and_room_mut(a, 20), Err(Error::OutOfMemory));
        assert_eq!(heap.request(b).unwrap(), &[4; 10]);
        assert_eq!(heap.request(a).unwrap(), &[1, 2, 3]);
        let c = heap.alloc().unwrap();
        heap.free(c).unwrap();
        assert_eq!(heap.request_and_room_mut(c, 1), Err(Error::InvalidHandle));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc,
        Free(usize),
        Append(usize, Vec<u8>),
        Prepend(usize, Vec<u8>),
        SetRequest(usize, Vec<u8>),
        Convert(usize),
        Truncate(usize, usize),
        CopyFrom(usize, usize, bool, usize, usize),
        Split(usize, usize),
        Wrap(usize, Vec<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let data = proptest::collection::vec(any::<u8>(), 0..20);
        prop_oneof![
            Just(Op::Alloc),
            (0..5usize).prop_map(Op::Free),
            (0..5usize, data.clone()).prop_map(|(h, d)| Op::Append(h, d)),
            (0..5usize, data.clone()).prop_map(|(h, d)| Op::Prepend(h, d)),
            (0..5usize, data).prop_map(|(h, d)| Op::SetRequest(h, d)),
            (0..5usize).prop_map(Op::Convert),
            (0..5usize, 0..30usize).prop_map(|(h, n)| Op::Truncate(h, n)),
            (0..5usize, 0..5usize, any::<bool>(), 0..25usize, 0..25usize)
                .prop_map(|(d, s, r, a, n)| Op::CopyFrom(d, s, r, a, n)),
            (0..5usize, 0..25usize).prop_map(|(h, n)| Op::Split(h, n)),
            (0..5usize, proptest::collection::vec(any::<u8>(), 0..12))
                .prop_map(|(h, d)| Op::Wrap(h, d)),
        ]
    }

    /// A block of the model: handle, request, reply.
    type ModelBlock = (Handle, Vec<u8>, Vec<u8>);

    proptest! {
        /// Random heap operations agree with a simple model (a request and a reply
        /// vector per handle) and never lose data, whatever blocks move.
        #[test]
        fn heap_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
            let mut heap_mem = HeapMem::<96, 4>::new();
            let mut heap = heap_mem.heap();
            let mut model: Vec<Option<ModelBlock>> = Vec::new();
            for op in ops {
                let live: Vec<usize> = (0..model.len()).filter(|i| model[*i].is_some()).collect();
                let pick = |k: usize| live.get(k % live.len().max(1)).copied();
                let used: usize = model.iter().flatten().map(|(_, q, r)| q.len() + r.len()).sum();
                match op {
                    Op::Alloc => match heap.alloc() {
                        Ok(h) => model.push(Some((h, vec![], vec![]))),
                        Err(e) => {
                            prop_assert_eq!(e, Error::NoFreeHandle);
                            prop_assert_eq!(live.len(), 4);
                        }
                    },
                    Op::Free(k) => if let Some(i) = pick(k) {
                        let (h, _, _) = model[i].take().unwrap();
                        heap.free(h).unwrap();
                        prop_assert_eq!(heap.reply(h), Err(Error::InvalidHandle));
                    },
                    Op::Append(k, d) | Op::Prepend(k, d) if pick(k).is_none() => { let _ = d; }
                    Op::Append(k, d) => {
                        let i = pick(k).unwrap();
                        let entry = model[i].as_mut().unwrap();
                        match heap.append_reply(entry.0, &d) {
                            Ok(()) => entry.2.extend_from_slice(&d),
                            Err(e) => {
                                prop_assert_eq!(e, Error::OutOfMemory);
                                prop_assert!(used + d.len() > 96);
                            }
                        }
                    }
                    Op::Prepend(k, d) => {
                        let i = pick(k).unwrap();
                        let entry = model[i].as_mut().unwrap();
                        match heap.prepend_reply(entry.0, &d) {
                            Ok(()) => { let mut v = d.clone(); v.extend_from_slice(&entry.2); entry.2 = v; }
                            Err(e) => {
                                prop_assert_eq!(e, Error::OutOfMemory);
                                prop_assert!(used + d.len() > 96);
                            }
                        }
                    }
                    Op::SetRequest(k, d) => if let Some(i) = pick(k) {
                        let entry = model[i].as_mut().unwrap();
                        match heap.set_request(entry.0, &d) {
                            Ok(()) => { entry.1 = d; entry.2.clear(); }
                            Err(e) => {
                                prop_assert_eq!(e, Error::OutOfMemory);
                                entry.1.clear();
                                entry.2.clear();
                            }
                        }
                    },
                    Op::Convert(k) => if let Some(i) = pick(k) {
                        let entry = model[i].as_mut().unwrap();
                        heap.convert_reply_to_request(entry.0).unwrap();
                        entry.1 = core::mem::take(&mut entry.2);
                    },
                    Op::CopyFrom(kd, ks, from_reply, start, n) => {
                        if let (Some(d), Some(src)) = (pick(kd), pick(ks)) {
                            let (hd, hs) = (model[d].as_ref().unwrap().0, model[src].as_ref().unwrap().0);
                            let part_bytes = if from_reply { model[src].as_ref().unwrap().2.clone() } else { model[src].as_ref().unwrap().1.clone() };
                            let part = if from_reply { Part::Reply } else { Part::Request };
                            match heap.append_reply_from(hd, hs, part, start..start + n) {
                                Ok(()) => {
                                    let bytes = part_bytes[start..start + n].to_vec();
                                    model[d].as_mut().unwrap().2.extend_from_slice(&bytes);
                                }
                                Err(Error::UnexpectedEnd) => prop_assert!(start + n > part_bytes.len()),
                                Err(e) => {
                                    prop_assert_eq!(e, Error::OutOfMemory);
                                    prop_assert!(used + n > 96);
                                }
                            }
                        }
                    }
                    Op::Split(k, at) => if let Some(i) = pick(k) {
                        let entry = model[i].as_mut().unwrap();
                        match heap.split_request(entry.0, at) {
                            Ok(()) => {
                                prop_assert!(entry.2.is_empty());
                                entry.2 = entry.1.split_off(at);
                            }
                            Err(Error::InvalidState) => prop_assert!(!entry.2.is_empty()),
                            Err(e) => {
                                prop_assert_eq!(e, Error::UnexpectedEnd);
                                prop_assert!(at > entry.1.len());
                            }
                        }
                    },
                    Op::Wrap(k, d) => if let Some(i) = pick(k) {
                        let entry = model[i].as_mut().unwrap();
                        match heap.wrap_request(entry.0, &d) {
                            Ok(()) => {
                                prop_assert!(entry.2.is_empty());
                                let mut r = d.clone();
                                r.append(&mut entry.1);
                                entry.2 = r;
                            }
                            Err(Error::InvalidState) => prop_assert!(!entry.2.is_empty()),
                            Err(e) => {
                                prop_assert_eq!(e, Error::OutOfMemory);
                                prop_assert!(used + d.len() > 96);
                            }
                        }
                    },
                    Op::Truncate(k, n) => if let Some(i) = pick(k) {
                        let entry = model[i].as_mut().unwrap();
                        heap.truncate_reply(entry.0, n).unwrap();
                        entry.2.truncate(n);
                    },
                }
                for (h, q, r) in model.iter().flatten() {
                    prop_assert_eq!(heap.request(*h).unwrap(), q.as_slice());
                    prop_assert_eq!(heap.reply(*h).unwrap(), r.as_slice());
                }
                let used: usize = model.iter().flatten().map(|(_, q, r)| q.len() + r.len()).sum();
                prop_assert_eq!(heap.used_bytes(), used);
            }
        }
    }

    /// An operation of [`room_ops_match_model`] on the live block `k % live`.
    #[derive(Debug, Clone)]
    enum RoomOp {
        Alloc,
        Free(usize),
        Append(usize, Vec<u8>),
        Convert(usize),
        Wrap(usize, Vec<u8>),
        Split(usize, usize),
        DropFront(usize, usize),
        /// `request_and_room_mut`, then the room scribbled over with `0xee`.
        Room(usize, usize),
        /// `fill_request` of this capacity whose filler fails.
        FailedFill(usize, usize),
    }

    fn room_op() -> impl Strategy<Value = RoomOp> {
        let data = proptest::collection::vec(any::<u8>(), 0..24);
        prop_oneof![
            Just(RoomOp::Alloc),
            (0..6usize).prop_map(RoomOp::Free),
            (0..6usize, data.clone()).prop_map(|(k, d)| RoomOp::Append(k, d)),
            (0..6usize).prop_map(RoomOp::Convert),
            (0..6usize, data).prop_map(|(k, d)| RoomOp::Wrap(k, d)),
            (0..6usize, 0..30usize).prop_map(|(k, n)| RoomOp::Split(k, n)),
            (0..6usize, 0..30usize).prop_map(|(k, n)| RoomOp::DropFront(k, n)),
            (0..6usize, 0..70usize).prop_map(|(k, n)| RoomOp::Room(k, n)),
            (0..6usize, 0..70usize).prop_map(|(k, n)| RoomOp::FailedFill(k, n)),
        ]
    }

    /// Runs `ops` on a heap of `N` bytes and `B` blocks and on a model, comparing
    /// every block after each step.
    fn room_model<const N: usize, const B: usize>(ops: Vec<RoomOp>) -> Result<(), TestCaseError> {
        let mut mem = HeapMem::<N, B>::new();
        let mut heap = mem.heap();
        let mut model: Vec<ModelBlock> = Vec::new();
        for op in ops {
            let used: usize = model.iter().map(|(_, q, r)| q.len() + r.len()).sum();
            let n_live = model.len();
            let pick = |k: usize| (n_live > 0).then(|| k % n_live);
            match op {
                RoomOp::Alloc => match heap.alloc() {
                    Ok(h) => model.push((h, vec![], vec![])),
                    Err(e) => {
                        prop_assert_eq!(e, Error::NoFreeHandle);
                        prop_assert_eq!(n_live, B);
                    }
                },
                RoomOp::Free(k) => {
                    if let Some(i) = pick(k) {
                        let (h, _, _) = model.remove(i);
                        heap.free(h).unwrap();
                    }
                }
                RoomOp::Append(k, d) => {
                    if let Some(i) = pick(k) {
                        let e = &mut model[i];
                        match heap.append_reply(e.0, &d) {
                            Ok(()) => e.2.extend_from_slice(&d),
                            Err(err) => {
                                prop_assert_eq!(err, Error::OutOfMemory);
                                prop_assert!(used + d.len() > N);
                            }
                        }
                    }
                }
                RoomOp::Convert(k) => {
                    if let Some(i) = pick(k) {
                        let e = &mut model[i];
                        let n = heap.convert_reply_to_request(e.0).unwrap();
                        e.1 = core::mem::take(&mut e.2);
                        prop_assert_eq!(n, e.1.len());
                    }
                }
                RoomOp::Wrap(k, d) => {
                    if let Some(i) = pick(k) {
                        let e = &mut model[i];
                        match heap.wrap_request(e.0, &d) {
                            Ok(()) => {
                                prop_assert!(e.2.is_empty());
                                let mut r = d.clone();
                                r.append(&mut e.1);
                                e.2 = r;
                            }
                            Err(Error::InvalidState) => prop_assert!(!e.2.is_empty()),
                            Err(err) => {
                                prop_assert_eq!(err, Error::OutOfMemory);
                                prop_assert!(used + d.len() > N);
                            }
                        }
                    }
                }
                RoomOp::Split(k, at) => {
                    if let Some(i) = pick(k) {
                        let e = &mut model[i];
                        match heap.split_request(e.0, at) {
                            Ok(()) => e.2 = e.1.split_off(at),
                            Err(Error::InvalidState) => prop_assert!(!e.2.is_empty()),
                            Err(err) => {
                                prop_assert_eq!(err, Error::UnexpectedEnd);
                                prop_assert!(at > e.1.len());
                            }
                        }
                    }
                }
                RoomOp::DropFront(k, n) => {
                    if let Some(i) = pick(k) {
                        let e = &mut model[i];
                        heap.drop_reply_front(e.0, n).unwrap();
                        e.2.drain(..n.min(e.2.len()));
                    }
                }
                RoomOp::Room(k, room) => {
                    if let Some(i) = pick(k) {
                        let e = &mut model[i];
                        // The reply is dropped whatever happens.
                        e.2.clear();
                        let others = used - model[i].1.len() - model[i].2.len();
                        let e = &mut model[i];
                        match heap.request_and_room_mut(e.0, room) {
                            Ok(buf) => {
                                prop_assert_eq!(buf.len(), e.1.len() + room);
                                prop_assert_eq!(&buf[..e.1.len()], e.1.as_slice());
                                // The room is free: writing it touches no block.
                                buf[e.1.len()..].fill(0xee);
                            }
                            Err(err) => {
                                prop_assert_eq!(err, Error::OutOfMemory);
                                prop_assert!(others + e.1.len() + room > N);
                            }
                        }
                    }
                }
                RoomOp::FailedFill(k, cap) => {
                    if let Some(i) = pick(k) {
                        let e = &mut model[i];
                        let r = heap.fill_request(e.0, cap, |buf| {
                            buf.fill(0xdd);
                            Err(Error::Malformed)
                        });
                        prop_assert!(matches!(r, Err(Error::Malformed | Error::OutOfMemory)));
                        // On error the block is left empty.
                        e.1.clear();
                        e.2.clear();
                    }
                }
            }
            for (h, q, r) in &model {
                prop_assert_eq!(heap.request(*h).unwrap(), q.as_slice());
                prop_assert_eq!(heap.reply(*h).unwrap(), r.as_slice());
            }
            let used: usize = model.iter().map(|(_, q, r)| q.len() + r.len()).sum();
            prop_assert_eq!(heap.used_bytes(), used);
            prop_assert_eq!(heap.free_bytes(), N - used);
            prop_assert_eq!(heap.handles_in_use(), model.len());
        }
        Ok(())
    }

    proptest! {
        /// Framing room after a request, failed receptions, dropped fronts and the
        /// layers' split and wrap agree with the model in a tight arena (blocks move
        /// and compact often) and in a roomy one: the room given out overlaps no
        /// block, and nothing else changes.
        #[test]
        fn room_ops_match_model(ops in proptest::collection::vec(room_op(), 1..60)) {
            room_model::<48, 5>(ops.clone())?;
            room_model::<200, 3>(ops)?;
        }
    }
}
