// Private: SQL text assembled at compile time (sql::Text and its operator+), so that statements
// built from shared fragments are still string literals: no allocation, no static-init order,
// and usable in static_assert.
#pragma once

#include <cstddef>
#include <string_view>

namespace outpost::detail::sql {

// SQL text built at compile time: a char array of N - 1 characters and a NUL, so that
// `constexpr const char* k = text.c_str()` names a string literal's worth of static storage.
template <std::size_t N>
struct Text {
    char chars[N] = {};

    constexpr Text() = default;
    constexpr Text(const char (&s)[N]) {  // NOLINT(google-explicit-constructor): a literal
        for (std::size_t i = 0; i < N; ++i) {
            chars[i] = s[i];
        }
    }
    constexpr const char* c_str() const noexcept { return chars; }
    constexpr std::string_view view() const noexcept { return {chars, N - 1}; }
};

template <std::size_t A, std::size_t B>
constexpr Text<A + B - 1> operator+(const Text<A>& a, const Text<B>& b) {
    Text<A + B - 1> out;
    for (std::size_t i = 0; i + 1 < A; ++i) {
        out.chars[i] = a.chars[i];
    }
    for (std::size_t i = 0; i < B; ++i) {
        out.chars[A - 1 + i] = b.chars[i];
    }
    return out;
}
template <std::size_t A, std::size_t B>
constexpr Text<A + B - 1> operator+(const Text<A>& a, const char (&b)[B]) {
    return a + Text<B>(b);
}
template <std::size_t A, std::size_t B>
constexpr Text<A + B - 1> operator+(const char (&a)[A], const Text<B>& b) {
    return Text<A>(a) + b;
}

}  // namespace outpost::detail::sql
