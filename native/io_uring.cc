// io_uring.cc: readBatch/writeBatch, whole batches of TAP frames per
// system call through io_uring (raw io_uring_setup/enter, no liburing), and
// the read(2)/write(2) loops used where io_uring is refused.
#include "common.h"

#include <linux/io_uring.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>

namespace vrio {
namespace {

// ---------------------------------------------------------------------------
// io_uring: many TAP reads or writes per system call
// ---------------------------------------------------------------------------
//
// Why: a TAP moves exactly one frame per read(2)/write(2) (there is no
// readv/recvmmsg of several frames), so forwarding between TAPs cost two
// syscalls per frame. With io_uring one io_uring_enter(2) carries a whole
// batch: the kernel runs the same tun read/write code for each frame, minus
// a user/kernel round trip per frame. What that saves is the syscall entry
// and exit, not the tun work itself: on the 6.18 VM this was written on,
// about 50 ns of a ~300 ns TAP read and ~30 ns of a TAP write whose frame
// the kernel drops at once (64-frame batches).
//
// Raw syscalls and <linux/io_uring.h>, not liburing: `npm ci` must build this
// on a fresh machine with nothing but g++ and the kernel headers, and we use
// a tiny subset (submit a batch, wait for all of it).
//
// How it is used, and why each choice:
//  - One ring per thread (thread_local), created on the thread's first
//    readBatch/writeBatch. Only that thread ever submits to it, which is what
//    IORING_SETUP_SINGLE_ISSUER promises; DEFER_TASKRUN then runs completion
//    work only inside our own io_uring_enter, never by interrupting the
//    thread later (no IPIs, no task_work while JS runs).
//  - Every call leaves the ring empty: it submits k <= kRingEntries SQEs,
//    waits until all k have completed and reaps every CQE before returning.
//    So calls never see each other's completions, the CQ (2 * SQ entries)
//    cannot overflow, and nothing is pending while JS runs or across calls.
//  - Every SQE carries RWF_NOWAIT. A TAP fd is O_NONBLOCK, but io_uring does
//    not let O_NONBLOCK alone end a read: on a file that supports
//    non-blocking I/O (tun sets FMODE_NOWAIT) it turns -EAGAIN into "arm a
//    poll and retry when data arrives", i.e. the read would stay pending
//    until the next frame. RWF_NOWAIT makes it complete at once with -EAGAIN,
//    the same answer read(2) gives. It also guarantees that no request is
//    handed to an io-wq worker thread (a file without FMODE_NOWAIT rejects
//    RWF_NOWAIT with -EOPNOTSUPP instead, and we use read/write for it).
//  - Hence every request is issued inline, by io_uring_enter itself, one
//    after the other in SQE order (io_submit_sqes issues each SQE before
//    looking at the next one). That is what keeps frames in order: read j
//    runs after read j-1 has returned and takes the next frame the device
//    queued. See ReadWithRing for the one case where a gap can appear.
//  - If io_uring cannot be used (io_uring_setup fails with ENOSYS: old
//    kernel or seccomp; EPERM: kernel.io_uring_disabled=2 or a container
//    policy; ENOMEM: locked-memory limit), or VROUTER_IO_URING=0 is set, the
//    thread uses the read(2)/write(2) loops for good. So does a thread whose
//    ring ever fails in a way we do not expect (the batch in progress
//    finishes with the loops).

#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)  // Linux 6.6; the build's kernel headers may predate it
#endif

// SQEs per io_uring_enter, like kChunk for recvmmsg. A TAP queue holds 1000
// frames by default (txqueuelen); longer batches take several calls.
constexpr unsigned kRingEntries = kChunk;

// A CQE result no request can produce: "this SQE never reported back".
constexpr int32_t kNoResult = INT32_MIN;

int IoUringSetup(unsigned entries, struct io_uring_params* params) {
  return static_cast<int>(syscall(__NR_io_uring_setup, entries, params));
}

int IoUringEnter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return static_cast<int>(syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, nullptr, 0));
}

int IoUringRegister(int fd, unsigned opcode, void* arg, unsigned nr_args) {
  return static_cast<int>(syscall(__NR_io_uring_register, fd, opcode, arg, nr_args));
}

// The mapped SQ and CQ rings of one io_uring instance.
class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { Close(); }

  bool IsOpen() const { return fd_ >= 0; }

  // Creates the ring. False (errno set) when this kernel or process cannot
  // have one; the caller then uses read/write.
  bool Open() {
    // Cheapest first. EINVAL means "flag unknown to this kernel" (SUBMIT_ALL
    // 5.18, SINGLE_ISSUER and DEFER_TASKRUN 6.1, NO_SQARRAY 6.6): retry with
    // fewer. Any other error means no io_uring at all.
    static const unsigned kFlagSets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_NO_SQARRAY,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    struct io_uring_params params;
    int fd = -1;
    for (const unsigned flags : kFlagSets) {
      memset(&params, 0, sizeof params);
      params.flags = flags;
      fd = IoUringSetup(kRingEntries, &params);
      if (fd >= 0 || errno != EINVAL) break;
    }
    if (fd < 0) return false;
    fd_ = fd;
    // NODROP (5.5): completions are never lost. RW_CUR_POS (5.6): offset -1
    // means "the file position", as read(2)/write(2) do.
    const unsigned needed = IORING_FEAT_NODROP | IORING_FEAT_RW_CUR_POS;
    if ((params.features & needed) != needed || params.sq_entries < kRingEntries ||
        params.cq_entries < 2 * kRingEntries) {
      Close();
      errno = ENOSYS;
      return false;
    }
    if (!Map(params)) {
      const int err = errno;
      Close();
      errno = err;
      return false;
    }
    // Optional (5.18): register the ring fd with this thread, so that
    // io_uring_enter skips the fd table lookup (an atomic refcount in a
    // multithreaded process) on every call.
    struct io_uring_rsrc_update update;
    memset(&update, 0, sizeof update);
    update.offset = UINT32_MAX;  // any free slot
    update.data = static_cast<uint64_t>(fd_);
    if (IoUringRegister(fd_, IORING_REGISTER_RING_FDS, &update, 1) == 1) {
      enter_fd_ = static_cast<int>(update.offset);
      enter_flags_ = IORING_ENTER_REGISTERED_RING;
    } else {
      enter_fd_ = fd_;
      enter_flags_ = 0;
    }
    return true;
  }

  // The j-th SQE of the batch being prepared (j < kRingEntries), zeroed.
  struct io_uring_sqe* Sqe(unsigned j) {
    struct io_uring_sqe* sqe = &sqes_[(sq_tail_ + j) & sq_mask_];
    memset(sqe, 0, sizeof *sqe);
    return sqe;
  }

  // Submits the k SQEs prepared with Sqe(0..k-1), each with user_data = its
  // index, and waits until all k have completed: results[j] = the CQE result
  // of SQE j (bytes, or -errno). False if io_uring_enter failed in a way
  // that leaves some SQE without a result (results[j] stays kNoResult); the
  // ring must not be used again then.
  bool Run(unsigned k, int32_t* results) {
    for (unsigned j = 0; j < k; j++) results[j] = kNoResult;
    // Release: the kernel must see the SQE contents before the new tail.
    sq_tail_ += k;
    __atomic_store_n(sq_ktail_, sq_tail_, __ATOMIC_RELEASE);
    // Normally one call: submit all k, wait for all k. Asking for k
    // completions is safe even if the kernel takes fewer SQEs than offered
    // (a ring without SUBMIT_ALL stops at an SQE it rejects): io_uring_enter
    // then returns the count at once, without waiting, and the loop offers
    // the rest again.
    unsigned submitted = 0, reaped = 0;
    while (reaped < k) {
      tls_stats.batchSyscalls += 1;
      const int n = IoUringEnter(enter_fd_, k - submitted, k - reaped, IORING_ENTER_GETEVENTS | enter_flags_);
      if (n < 0) {
        // EINTR: a signal ended the wait (a submission is reported by its
        // count, never by an error); just wait again.
        if (errno != EINTR) {
          Abandon();
          return false;
        }
      } else if (n == 0 && submitted < k) {
        Abandon();  // the kernel took none of our SQEs: no progress possible
        return false;
      } else {
        submitted += static_cast<unsigned>(n);
      }
      reaped += Reap(results, k);
    }
    return true;
  }

 private:
  bool Map(const struct io_uring_params& p) {
    sq_size_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cq_size_ = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    const bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) sq_size_ = cq_size_ = sq_size_ > cq_size_ ? sq_size_ : cq_size_;
    // MAP_POPULATE: fault the pages in now, not on the packet path.
    const int prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED | MAP_POPULATE;
    sq_ring_ = mmap(nullptr, sq_size_, prot, flags, fd_, IORING_OFF_SQ_RING);
    if (sq_ring_ == MAP_FAILED) return false;
    if (single) {
      cq_ring_ = sq_ring_;
    } else {
      cq_ring_ = mmap(nullptr, cq_size_, prot, flags, fd_, IORING_OFF_CQ_RING);
      if (cq_ring_ == MAP_FAILED) return false;
    }
    sqes_size_ = p.sq_entries * sizeof(struct io_uring_sqe);
    void* sqes = mmap(nullptr, sqes_size_, prot, flags, fd_, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) return false;
    sqes_ = static_cast<struct io_uring_sqe*>(sqes);

    char* sq = static_cast<char*>(sq_ring_);
    char* cq = static_cast<char*>(cq_ring_);
    sq_ktail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
    sq_tail_ = *sq_ktail_;
    if (!(p.flags & IORING_SETUP_NO_SQARRAY)) {
      // The classic indirection array: slot i always names SQE i, so the
      // SQEs themselves form the queue, as with NO_SQARRAY.
      unsigned* array = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
      for (unsigned i = 0; i < p.sq_entries; i++) array[i] = i;
    }
    cq_khead_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
    cq_ktail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<struct io_uring_cqe*>(cq + p.cq_off.cqes);
    return true;
  }

  // Moves every available CQE into results[user_data]; returns how many.
  unsigned Reap(int32_t* results, unsigned k) {
    unsigned head = *cq_khead_;  // only we move the head
    // Acquire: the CQE contents are visible once the tail is.
    const unsigned tail = __atomic_load_n(cq_ktail_, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    for (; head != tail; head++, n++) {
      const struct io_uring_cqe* cqe = &cqes_[head & cq_mask_];
      if (cqe->user_data < k) results[cqe->user_data] = cqe->res;
    }
    // Release: we are done reading those CQEs before the kernel reuses them.
    __atomic_store_n(cq_khead_, head, __ATOMIC_RELEASE);
    return n;
  }

  // After an unexpected io_uring_enter error (it would take a kernel that
  // cannot allocate a request; never seen in normal operation): closing the
  // ring cancels whatever it still holds, and ThreadRing() then sends this
  // thread to the read/write loops for good.
  void Abandon() { Close(); }

  void Close() {
    if (enter_flags_ & IORING_ENTER_REGISTERED_RING) {
      struct io_uring_rsrc_update update;
      memset(&update, 0, sizeof update);
      update.offset = static_cast<uint32_t>(enter_fd_);
      IoUringRegister(fd_, IORING_UNREGISTER_RING_FDS, &update, 1);
      enter_flags_ = 0;
    }
    if (sqes_ != nullptr) munmap(sqes_, sqes_size_);
    if (cq_ring_ != nullptr && cq_ring_ != MAP_FAILED && cq_ring_ != sq_ring_) munmap(cq_ring_, cq_size_);
    if (sq_ring_ != nullptr && sq_ring_ != MAP_FAILED) munmap(sq_ring_, sq_size_);
    if (fd_ >= 0) CloseQuietly(fd_);
    sqes_ = nullptr;
    cq_ring_ = sq_ring_ = nullptr;
    fd_ = -1;
  }

  int fd_ = -1;
  int enter_fd_ = -1;        // fd_, or its registered index with IORING_ENTER_REGISTERED_RING
  unsigned enter_flags_ = 0;
  void* sq_ring_ = nullptr;
  void* cq_ring_ = nullptr;
  size_t sq_size_ = 0, cq_size_ = 0, sqes_size_ = 0;
  struct io_uring_sqe* sqes_ = nullptr;
  unsigned* sq_ktail_ = nullptr;
  unsigned sq_tail_ = 0;  // our copy: only we move the SQ tail
  unsigned sq_mask_ = 0;
  unsigned* cq_khead_ = nullptr;
  unsigned* cq_ktail_ = nullptr;
  unsigned cq_mask_ = 0;
  struct io_uring_cqe* cqes_ = nullptr;
};

enum class RingState : uint8_t { kUntried, kActive, kOff };
thread_local RingState tls_ring_state = RingState::kUntried;
thread_local Ring tls_ring;

// VROUTER_IO_URING=0 (or off/false/no) keeps the read/write loops: for
// comparing both paths, and as an escape hatch.
bool IoUringDisabledByEnvironment() {
  const char* value = getenv("VROUTER_IO_URING");
  if (value == nullptr) return false;
  return strcmp(value, "0") == 0 || strcasecmp(value, "off") == 0 || strcasecmp(value, "false") == 0 ||
         strcasecmp(value, "no") == 0;
}

// This thread's ring, created on first use; nullptr: use read/write.
Ring* ThreadRing() {
  if (tls_ring_state == RingState::kActive) {
    if (tls_ring.IsOpen()) return &tls_ring;
    tls_ring_state = RingState::kOff;  // abandoned after a failure
    return nullptr;
  }
  if (tls_ring_state == RingState::kOff) return nullptr;
  const bool usable = !IoUringDisabledByEnvironment() && tls_ring.Open();
  tls_ring_state = usable ? RingState::kActive : RingState::kOff;
  return usable ? &tls_ring : nullptr;
}

// io_uring pays off only for batches of a few frames. On the VM this was
// measured on, a request that moves a frame costs the ring some 30-50 ns
// less than a read(2) or write(2) syscall, but one that finds a TAP or
// eventfd empty (EAGAIN) costs about as much as the whole read(2) (~200 ns),
// and io_uring_enter itself adds ~140 ns per call. So a batch expected to
// move fewer than kMinRingFrames frames uses the read/write loop: a write of
// fewer frames, or a read on an fd whose previous readBatch got fewer than
// kMinRingFrames - 1 (an idle port: usually one frame, and then the read
// that finds the queue empty).
constexpr int64_t kMinRingFrames = 4;

// Frames the previous readBatch on an fd got (hashed by fd: a collision only
// costs a worse guess). It picks the path, and the size of the first wave of
// reads: one more than last time, so a port that keeps getting n frames per
// batch costs one call of n + 1 reads (the last finds the queue empty, as
// with read(2)), and a busy port that fills whole batches one call of `max`.
constexpr int kReadHints = 256;
thread_local uint16_t tls_read_hint[kReadHints];

uint16_t& ReadHint(int fd) { return tls_read_hint[static_cast<unsigned>(fd) % kReadHints]; }

enum class RingOutcome {
  kDone,     // the call's result is final
  kThrown,   // a JS exception is pending
  kUseLoop,  // continue with the read/write loop from the frame reached
};

// readBatch through the ring. *count: frames read so far (final with kDone,
// where the loop continues with kUseLoop).
//
// Order. Reads are issued one after the other in SQE order (see above), so
// the successful ones hold frames in the order the device queued them. A
// read can only find the queue empty (-EAGAIN) and a later one of the same
// submission still get a frame if the frame arrived in between; that frame
// is moved down into the first free slot, so frames [0, n) are always
// consecutive device frames, in order, and the batch ends there (as it
// ends at EAGAIN with read(2)). Nothing read is ever dropped.
//
// Waves. Reads are submitted in waves: `wave` reads first (see ReadHint),
// then twice as many as the last wave while every read of a wave got a
// frame, up to max. Reads past the end of the queue cost; a wave that comes
// up short of the queue costs another io_uring_enter.
RingOutcome ReadWithRing(napi_env env, const char* fn, Ring* ring, int fd, uint8_t* buffer, size_t buffer_length,
                         const int32_t* offsets, int32_t* lengths, int64_t max, int64_t capacity, unsigned wave,
                         int64_t* count) {
  uint8_t* slots[kRingEntries];
  int32_t results[kRingEntries];
  while (*count < max) {
    const int64_t base = *count;
    unsigned k = wave < kRingEntries ? wave : kRingEntries;
    if (max - base < k) k = static_cast<unsigned>(max - base);
    for (unsigned j = 0; j < k; j++) {
      int64_t offset = 0, span = 0;
      if (!LoadFrame(env, fn, buffer_length, offsets, nullptr, capacity, base + j, &offset, &span)) {
        return RingOutcome::kThrown;
      }
      slots[j] = buffer + offset;
      struct io_uring_sqe* sqe = ring->Sqe(j);
      sqe->opcode = IORING_OP_READ;
      sqe->fd = fd;
      sqe->addr = reinterpret_cast<uintptr_t>(slots[j]);
      sqe->len = static_cast<uint32_t>(span);
      sqe->off = UINT64_MAX;  // -1: the file position, like read(2)
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = j;
    }
    const bool ran = ring->Run(k, results);
    unsigned got = 0;
    int error = 0;  // the first error other than EAGAIN, in SQE order
    for (unsigned j = 0; j < k; j++) {
      const int32_t result = results[j];
      if (result >= 0) {
        // A gap before this frame (see above): close it. memmove, as a
        // caller may (pointlessly, but legally) give overlapping slots.
        if (got != j) memmove(slots[got], slots[j], static_cast<size_t>(result));
        lengths[base + got] = result;
        got++;
      } else if (result != kNoResult && result != -EAGAIN && error == 0) {
        error = -result;
      }
    }
    *count = base + got;
    if (!ran) return RingOutcome::kUseLoop;  // the ring is closed now: finish with read(2)
    if (*count == 0 && error != 0) {
      // Nothing read and an error: let read(2) reproduce it, so the thrown
      // error is exactly the one the loop throws ("read fd 5: ..."). It also
      // covers an fd io_uring cannot do without blocking (-EOPNOTSUPP for
      // RWF_NOWAIT), which read(2) then simply reads.
      return RingOutcome::kUseLoop;
    }
    if (got < k) break;  // queue empty, or an error that ends the batch (it recurs next call)
    wave *= 2;
  }
  return RingOutcome::kDone;
}

// writeBatch through the ring. *done: frames done so far (final with kDone,
// where the loop continues with kUseLoop).
//
// Order. The writes are issued one after the other in SQE order (see above),
// so frames leave in batch order, as with the write(2) loop.
//
// Why the writes are not linked (IOSQE_IO_LINK): a link makes the kernel
// start each write from task_work after the previous one completed, which
// measured about 55 ns per frame more than the unlinked writes (on a TAP
// whose kernel side dropped the frames at once, 64-frame batches: linked
// ~465 ns, unlinked ~410 ns, write(2) loop ~440 ns per frame): more than the
// syscall it saves. Unlinked writes keep writeBatch's contract this way:
//  - Every frame up to the last one written in a submission is done: written,
//    or, if its own write failed (whatever the error, EAGAIN included),
//    dropped and counted, since frames after it are already out and a retry
//    would reorder it. (The write(2) loop would have returned at an EAGAIN;
//    with the ring, a frame can only get EAGAIN and a later one succeed if
//    the fd became writable again within the same system call.)
//  - The failures after the last written frame get exactly the loop's
//    treatment, one by one: EAGAIN returns (frames [done, count) were not
//    written and can be retried), an fd error throws or ends the batch, any
//    other error drops that frame and looks at the next.
// (A TAP practically never answers EAGAIN: a small frame goes through
// tun_build_skb, which does not charge the socket send buffer.)
RingOutcome WriteWithRing(napi_env env, const char* fn, Ring* ring, int fd, uint8_t* buffer, size_t buffer_length,
                          const int32_t* offsets, const int32_t* lengths, int64_t count, int64_t* done) {
  int32_t results[kRingEntries];
  while (*done < count) {
    const int64_t base = *done;
    const unsigned k = count - base < kRingEntries ? static_cast<unsigned>(count - base) : kRingEntries;
    for (unsigned j = 0; j < k; j++) {
      int64_t offset = 0, span = 0;
      if (!LoadFrame(env, fn, buffer_length, offsets, lengths, 0, base + j, &offset, &span)) {
        return RingOutcome::kThrown;
      }
      struct io_uring_sqe* sqe = ring->Sqe(j);
      sqe->opcode = IORING_OP_WRITE;
      sqe->fd = fd;
      sqe->addr = reinterpret_cast<uintptr_t>(buffer + offset);
      sqe->len = static_cast<uint32_t>(span);
      sqe->off = UINT64_MAX;  // -1: the file position, like write(2)
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = j;
    }
    const bool ran = ring->Run(k, results);
    // Results [0, known) are known (all of them unless the ring failed).
    unsigned known = 0;
    while (known < k && results[known] != kNoResult) known++;
    unsigned written_until = 0;  // 1 + the index of the last frame written
    for (unsigned j = 0; j < known; j++) {
      if (results[j] >= 0) written_until = j + 1;
    }
    bool again = false;  // EINTR: submit the rest again
    for (unsigned j = 0; j < known && !again; j++) {
      const int32_t result = results[j];
      if (result >= 0) {
        // Written (like write(2) >= 0 in the loop, a short write on some
        // other kind of fd counts as done).
        *done += 1;
        continue;
      }
      const int err = -result;
      if (j < written_until) {
        CountTxDrop(err);  // failed, but a later frame is out: see above
        *done += 1;
        continue;
      }
      // No frame after this one was written: decide as the loop does.
      if (err == EAGAIN) return RingOutcome::kDone;  // full: frames [done, count) not written
      if (err == EINTR) {
        again = true;
      } else if (IsFdError(err)) {
        // With no frame done, let write(2) reproduce the error so that it is
        // thrown exactly as the loop throws it; this also covers an fd that
        // refuses RWF_NOWAIT (-EOPNOTSUPP), which write(2) then just writes.
        return *done == 0 ? RingOutcome::kUseLoop : RingOutcome::kDone;
      } else {
        CountTxDrop(err);
        *done += 1;
      }
    }
    if (!ran) return RingOutcome::kUseLoop;  // the ring is closed now: finish with write(2)
  }
  return RingOutcome::kDone;
}

// ---------------------------------------------------------------------------
// Frame I/O on TAP fds. A TAP moves one frame per read(2)/write(2); with
// io_uring (above) one system call carries a whole batch of them, otherwise
// the loops below make one call per frame.
// ---------------------------------------------------------------------------

// readBatch(fd, buffer, offsets, lengths, max, capacity): number
// Reads frames into buffer[offsets[i] .. offsets[i] + capacity) and their
// lengths into lengths[i], until the fd is drained (EAGAIN) or `max` frames
// have been read; returns the count. A frame longer than `capacity` is cut
// by the kernel, so capacity must be at least MTU + 14.
// A failure on the first read throws; one after some frames returns those
// frames (the error recurs, and is thrown, on the next call).
napi_value ReadBatch(napi_env env, napi_callback_info info) {
  const char* fn = "readBatch";
  Args args;
  FrameArrays frames;
  int64_t max = 0, capacity = 0;
  if (!GetArgs(env, info, fn, 6, &args) || !GetFrameArrays(env, args, fn, 4, "max", &frames, &max) ||
      !GetInteger(env, args.v[5], fn, "capacity", 1, INT32_MAX, &capacity) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, nullptr, capacity, max)) {
    return nullptr;
  }
  const auto& [fd, buffer, buffer_length, offsets, lengths] = frames;
  int64_t count = 0;
  uint16_t& hint = ReadHint(fd);
  const int64_t expected = hint + 1 < max ? hint + 1 : max;  // frames this call will likely get
  Ring* ring = expected >= kMinRingFrames ? ThreadRing() : nullptr;
  if (ring != nullptr) {
    switch (ReadWithRing(env, fn, ring, fd, buffer, buffer_length, offsets, lengths, max, capacity,
                         static_cast<unsigned>(expected), &count)) {
      case RingOutcome::kDone:
        hint = static_cast<uint16_t>(count < UINT16_MAX ? count : UINT16_MAX);
        return Int(env, static_cast<double>(count));
      case RingOutcome::kThrown:
        return nullptr;
      case RingOutcome::kUseLoop:
        break;
    }
  }
  while (count < max) {
    int64_t offset = 0, span = 0;
    if (!LoadFrame(env, fn, buffer_length, offsets, nullptr, capacity, count, &offset, &span)) return nullptr;
    tls_stats.batchSyscalls += 1;
    const ssize_t n = read(fd, buffer + offset, static_cast<size_t>(span));
    if (n >= 0) {
      lengths[count++] = static_cast<int32_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    if (count == 0) {
      ThrowFdErrno(env, "read", fd, errno);
      return nullptr;
    }
    break;
  }
  hint = static_cast<uint16_t>(count < UINT16_MAX ? count : UINT16_MAX);
  return Int(env, static_cast<double>(count));
}

// writeBatch(fd, buffer, offsets, lengths, count): number
// Writes frame i with one write (io_uring: all of them in one system call).
// Returns n, the number of frames from the front of
// the batch that are done: frames [0, n) were written, or dropped on an
// error that concerns that frame only (counted in ioStats().txDropped, errno
// in ioStats().lastTxErrno). n < count only when the fd would block
// (EAGAIN): frames [n, count) were not attempted and can be retried later.
// An error that concerns the fd itself (EBADF, ...) throws if no frame was
// done yet, and otherwise ends the batch early (it recurs on the next call).
napi_value WriteBatch(napi_env env, napi_callback_info info) {
  const char* fn = "writeBatch";
  Args args;
  FrameArrays frames;
  int64_t count = 0;
  if (!GetArgs(env, info, fn, 5, &args) || !GetFrameArrays(env, args, fn, 4, "count", &frames, &count) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, frames.lengths, 0, count)) {
    return nullptr;
  }
  const auto& [fd, buffer, buffer_length, offsets, lengths] = frames;
  int64_t done = 0;
  Ring* ring = count >= kMinRingFrames ? ThreadRing() : nullptr;
  if (ring != nullptr) {
    switch (WriteWithRing(env, fn, ring, fd, buffer, buffer_length, offsets, lengths, count, &done)) {
      case RingOutcome::kDone:
        return Int(env, static_cast<double>(done));
      case RingOutcome::kThrown:
        return nullptr;
      case RingOutcome::kUseLoop:
        break;
    }
  }
  while (done < count) {
    int64_t offset = 0, span = 0;
    if (!LoadFrame(env, fn, buffer_length, offsets, lengths, 0, done, &offset, &span)) return nullptr;
    tls_stats.batchSyscalls += 1;
    if (write(fd, buffer + offset, static_cast<size_t>(span)) >= 0) {
      done++;
      continue;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN) break;
    if (IsFdError(err)) {
      if (done == 0) {
        ThrowFdErrno(env, "write", fd, err);
        return nullptr;
      }
      break;
    }
    CountTxDrop(err);
    done++;
  }
  return Int(env, static_cast<double>(done));
}

}  // namespace

bool ThreadUsesIoUring() { return ThreadRing() != nullptr; }

void RegisterIoUring(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"readBatch", ReadBatch},
      {"writeBatch", WriteBatch},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
