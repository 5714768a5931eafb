#include "state_record.hpp"

#include <array>

namespace imclient::detail::state {

namespace {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table lookup per byte.
constexpr std::array<std::uint32_t, 256> make_table() {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1) != 0 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[i] = c;
    }
    return t;
}
constexpr auto kTable = make_table();

void put_u32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_str(std::string& out, std::string_view s) {
    put_u32(out, static_cast<std::uint32_t>(s.size()));
    out.append(s);
}

std::uint32_t get_u32_at(std::string_view d, std::size_t pos) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i)
        v = (v << 8) | static_cast<unsigned char>(d[pos + static_cast<std::size_t>(i)]);
    return v;
}

// Reads fields front to back; any read past the end marks it failed (and reads zeros).
class Reader {
  public:
    explicit Reader(std::string_view d) : d_(d) {}
    bool ok() const noexcept { return ok_; }
    bool at_end() const noexcept { return pos_ == d_.size(); }
    std::uint8_t u8() {
        if (!need(1)) return 0;
        return static_cast<std::uint8_t>(d_[pos_++]);
    }
    std::uint32_t u32() {
        if (!need(4)) return 0;
        const auto v = get_u32_at(d_, pos_);
        pos_ += 4;
        return v;
    }
    std::uint64_t u64() {
        if (!need(8)) return 0;
        std::uint64_t v = 0;
        for (int i = 7; i >= 0; --i)
            v = (v << 8) | static_cast<unsigned char>(d_[pos_ + static_cast<std::size_t>(i)]);
        pos_ += 8;
        return v;
    }
    std::string str() {
        const std::uint32_t n = u32();
        if (!need(n)) return {};
        std::string s(d_.substr(pos_, n));
        pos_ += n;
        return s;
    }

  private:
    bool need(std::size_t n) {
        if (!ok_ || d_.size() - pos_ < n) {
            ok_ = false;
            return false;
        }
        return true;
    }
    std::string_view d_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

// Frames `payload` (already at out[start..]) in place: its length and CRC go before it.
void frame(std::string& out, std::size_t start) {
    const std::string_view payload(out.data() + start, out.size() - start);
    std::string head;
    put_u32(head, static_cast<std::uint32_t>(payload.size()));
    put_u32(head, crc32c(payload));
    out.insert(start, head);
}

std::optional<Record> decode(std::string_view payload) {
    Reader r(payload);
    Record rec;
    const auto kind = r.u8();
    switch (static_cast<Kind>(kind)) {
        case Kind::add:
        case Kind::add_group: {
            rec.kind = Kind::add;
            OutMessage& m = rec.message;
            m.client_msg_id = r.str();
            m.owner = r.u64();
            (static_cast<Kind>(kind) == Kind::add_group ? m.group : m.peer) = r.u64();
            const auto type = r.u8();
            if (type != static_cast<std::uint8_t>(MessageType::text) &&
                type != static_cast<std::uint8_t>(MessageType::file))
                return std::nullopt;
            m.type = static_cast<MessageType>(type);
            m.text = r.str();
            m.file.file_id = r.u64();
            m.file.name = r.str();
            m.file.size = r.u64();
            m.file.sha256 = r.str();
            m.file.mime = r.str();
            if (m.client_msg_id.empty() || (m.peer == 0 && m.group == 0)) return std::nullopt;
            break;
        }
        case Kind::done:
            rec.kind = Kind::done;
            rec.message.client_msg_id = r.str();
            if (rec.message.client_msg_id.empty()) return std::nullopt;
            break;
        case Kind::login:
        case Kind::cursor_owner:
        case Kind::sync_cursor:
            rec.kind = static_cast<Kind>(kind);
            rec.value = r.u64();
            break;
        case Kind::cursor_clear:
            rec.kind = Kind::cursor_clear;
            break;
        case Kind::marks:
            rec.kind = Kind::marks;
            rec.value = r.u64();
            rec.delivered = r.u64();
            rec.read = r.u64();
            break;
        default:
            return std::nullopt;
    }
    if (!r.ok() || !r.at_end()) return std::nullopt;
    return rec;
}

}  // namespace

std::uint32_t crc32c(std::string_view data) noexcept {
    std::uint32_t c = 0xffffffffu;
    for (const char ch : data)
        c = kTable[(c ^ static_cast<unsigned char>(ch)) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

std::string header() {
    std::string h(kMagic);
    put_u32(h, kVersion);
    return h;
}

bool valid_header(std::string_view data) noexcept {
    return data.size() >= kHeaderBytes && data.substr(0, kMagic.size()) == kMagic &&
           get_u32_at(data, kMagic.size()) == kVersion;
}

void append_add(std::string& out, const OutMessage& m) {
    const std::size_t start = out.size();
    out.push_back(static_cast<char>(m.group != 0 ? Kind::add_group : Kind::add));
    put_str(out, m.client_msg_id);
    put_u64(out, m.owner);
    put_u64(out, m.group != 0 ? m.group : m.peer);
    out.push_back(static_cast<char>(m.type));
    put_str(out, m.text);
    put_u64(out, m.file.file_id);
    put_str(out, m.file.name);
    put_u64(out, m.file.size);
    put_str(out, m.file.sha256);
    put_str(out, m.file.mime);
    frame(out, start);
}

void append_done(std::string& out, std::string_view client_msg_id) {
    const std::size_t start = out.size();
    out.push_back(static_cast<char>(Kind::done));
    put_str(out, client_msg_id);
    frame(out, start);
}

void append_value(std::string& out, Kind kind, std::uint64_t value) {
    const std::size_t start = out.size();
    out.push_back(static_cast<char>(kind));
    put_u64(out, value);
    frame(out, start);
}

void append_clear(std::string& out) {
    const std::size_t start = out.size();
    out.push_back(static_cast<char>(Kind::cursor_clear));
    frame(out, start);
}

void append_marks(std::string& out, std::uint64_t conversation, std::uint64_t delivered,
                  std::uint64_t read) {
    const std::size_t start = out.size();
    out.push_back(static_cast<char>(Kind::marks));
    put_u64(out, conversation);
    put_u64(out, delivered);
    put_u64(out, read);
    frame(out, start);
}

std::optional<Parsed> parse(std::string_view data, std::size_t pos) {
    if (pos > data.size() || data.size() - pos < kFrameBytes) return std::nullopt;
    const std::uint32_t len = get_u32_at(data, pos);
    const std::uint32_t crc = get_u32_at(data, pos + 4);
    if (len == 0 || len > kMaxPayloadBytes || data.size() - pos - kFrameBytes < len)
        return std::nullopt;
    const std::string_view payload = data.substr(pos + kFrameBytes, len);
    if (crc32c(payload) != crc) return std::nullopt;
    auto rec = decode(payload);
    if (!rec) return std::nullopt;
    return Parsed{std::move(*rec), kFrameBytes + len};
}

}  // namespace imclient::detail::state
