#include "table.hpp"

#include <stdexcept>

namespace outpost::cli {

std::size_t display_width(const std::string& s) noexcept {
    std::size_t n = 0;
    for (const char c : s) {
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
            ++n;
        }
    }
    return n;
}

Table::Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

void Table::add(std::vector<std::string> cells) {
    if (cells.size() > columns_.size()) {
        throw std::invalid_argument("table row has more cells than columns");
    }
    cells.resize(columns_.size());
    rows_.push_back(std::move(cells));
}

void Table::print(std::ostream& out) const {
    std::vector<std::size_t> width(columns_.size());
    for (std::size_t c = 0; c < columns_.size(); ++c) {
        width[c] = display_width(columns_[c].title);
        for (const auto& row : rows_) {
            width[c] = std::max(width[c], display_width(row[c]));
        }
    }
    auto line = [&](auto cell_of) {
        std::string text;
        for (std::size_t c = 0; c < columns_.size(); ++c) {
            const std::string& cell = cell_of(c);
            const std::string pad(width[c] - display_width(cell), ' ');
            const bool last = c + 1 == columns_.size();
            if (columns_[c].numeric) {
                text += pad + cell;
            } else {
                text += cell + (last ? "" : pad);
            }
            if (!last) {
                text += "  ";
            }
        }
        while (!text.empty() && text.back() == ' ') {
            text.pop_back();
        }
        out << text << '\n';
    };
    line([&](std::size_t c) -> const std::string& { return columns_[c].title; });
    for (const auto& row : rows_) {
        line([&](std::size_t c) -> const std::string& { return row[c]; });
    }
}

}  // namespace outpost::cli
