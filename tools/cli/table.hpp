// Aligned text tables for the human output of the `outpost` command.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace outpost::cli {

// Columns are padded to their widest cell (counted in UTF-8 code points); columns marked
// numeric are right-aligned. The last column is never padded, so lines carry no trailing blanks.
class Table {
  public:
    struct Column {
        std::string title;
        bool numeric = false;
    };
    explicit Table(std::vector<Column> columns);

    // Adds a row; missing cells are empty, extra cells are an error (std::invalid_argument).
    void add(std::vector<std::string> cells);
    bool empty() const noexcept { return rows_.empty(); }
    std::size_t size() const noexcept { return rows_.size(); }
    // Writes the title line and the rows.
    void print(std::ostream& out) const;

  private:
    std::vector<Column> columns_;
    std::vector<std::vector<std::string>> rows_;
};

// Display width of `s`: its UTF-8 code points (no East Asian width rules).
std::size_t display_width(const std::string& s) noexcept;

}  // namespace outpost::cli
