// TORCH_CHECK with messages built without std::ostream. In some environments (seen on the lent H100/H200 image:
// torch 2.11 + libstdc++ 6.0.33, GCC 13.3) formatting an integer through an ostream inside an extension
// segfaults (even with no exception involved), so a TORCH_CHECK whose message held a number, a shape or a device
// crashed Python instead of raising. std::to_string formats through snprintf and is safe there.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <string>
#include <type_traits>

namespace sageattn::check {

inline std::string part(const char* s) { return s; }
inline std::string part(const std::string& s) { return s; }
inline std::string part(c10::ScalarType t) { return c10::toString(t); }
inline std::string part(const c10::Device& d) {
  std::string s = c10::DeviceTypeName(d.type(), /*lower_case=*/true);
  return d.has_index() ? s + ":" + std::to_string(int(d.index())) : s;
}
inline std::string part(c10::IntArrayRef a) {
  std::string s = "[";
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + std::to_string(a[i]);
  return s + "]";
}
template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
std::string part(T v) {
  return std::to_string(v);
}

template <class... Args>
std::string message(const Args&... args) {
  std::string s;
  ((s += part(args)), ...);
  return s;
}

}  // namespace sageattn::check

// Like TORCH_CHECK(cond, parts...): the message is only built when the check fails.
#define SA_CHECK(cond, ...) TORCH_CHECK(cond, ::sageattn::check::message(__VA_ARGS__))
