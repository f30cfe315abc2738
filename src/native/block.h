// A malloc'd byte block that can be handed to JS as an external Buffer (freed by the Buffer's finalizer).
// Pure C++: shared by every transport.
#ifndef IPCWIRE_BLOCK_H_
#define IPCWIRE_BLOCK_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace ipcwire {

class Block {
 public:
  Block() = default;
  // Adopts memory from malloc.
  Block(uint8_t* data, size_t size) : data_(data), size_(size), capacity_(size) {}
  ~Block() { free(data_); }
  Block(Block&& o) noexcept : data_(o.data_), size_(o.size_), capacity_(o.capacity_), sealed_(o.sealed_) {
    o.data_ = nullptr;
    o.size_ = o.capacity_ = 0;
  }
  Block& operator=(Block&& o) noexcept {
    if (this != &o) {
      free(data_);
      data_ = o.data_;
      size_ = o.size_;
      capacity_ = o.capacity_;
      sealed_ = o.sealed_;
      o.data_ = nullptr;
      o.size_ = o.capacity_ = 0;
    }
    return *this;
  }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  // Makes room for `n` bytes in all without copying later (malloc does not touch the pages: reserving
  // generously is cheap, and Release() trims). Throws std::bad_alloc on failure.
  void Reserve(size_t n) {
    if (n <= capacity_) return;
    auto* grown = static_cast<uint8_t*>(realloc(data_, n));
    if (grown == nullptr) throw std::bad_alloc();
    data_ = grown;
    capacity_ = n;
  }

  // Appends bytes, growing geometrically. Throws std::bad_alloc on failure.
  void Append(const uint8_t* p, size_t n) {
    if (size_ + n > capacity_) {
      size_t cap = capacity_ ? capacity_ * 2 : 4096;
      while (cap < size_ + n) cap *= 2;
      auto* grown = static_cast<uint8_t*>(realloc(data_, cap));
      if (grown == nullptr) throw std::bad_alloc();
      data_ = grown;
      capacity_ = cap;
    }
    memcpy(data_ + size_, p, n);
    size_ += n;
  }

  // Gives up the memory (to a Buffer finalizer). Trims slack first so a Buffer does not pin unused bytes.
  uint8_t* Release() {
    if (capacity_ > size_ && size_ > 0) {
      auto* trimmed = static_cast<uint8_t*>(realloc(data_, size_));
      if (trimmed != nullptr) data_ = trimmed;
    }
    uint8_t* p = data_;
    data_ = nullptr;
    size_ = capacity_ = 0;
    return p;
  }

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // A sealed block takes no more appended frames (it is one large frame, or ordering requires a new one).
  bool sealed() const { return sealed_; }
  void seal() { sealed_ = true; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  bool sealed_ = false;
};

}  // namespace ipcwire

#endif  // IPCWIRE_BLOCK_H_
