// API tokens in the server's SQLite file, in a table of their own: token changes are rare
// (an administrator's command), so each is its own durable transaction.
#include <sqlite3.h>

#include <mutex>

#include "store/token_store.h"

namespace gpuorch::store {
namespace {

using core::Result;
using core::Status;

class SqliteTokenStore final : public TokenStore {
 public:
  explicit SqliteTokenStore(sqlite3* db) : db_(db) {}
  ~SqliteTokenStore() override { sqlite3_close_v2(db_); }

  Status Init() {
    char* err = nullptr;
    const char* schema =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=FULL;"
        "PRAGMA busy_timeout=5000;"
        "CREATE TABLE IF NOT EXISTS tokens ("
        "  accessor TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, json TEXT NOT NULL,"
        "  revoked_ms INTEGER NOT NULL DEFAULT 0);";
    if (sqlite3_exec(db_, schema, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return Status::Precondition("token store: " + msg);
    }
    return Status::Ok();
  }

  Status Insert(const StoredToken& t) override {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_,
                           "INSERT INTO tokens(accessor, secret_hash, json, revoked_ms) "
                           "VALUES(?,?,?,?)",
                           -1, &st, nullptr) != SQLITE_OK) {
      return Error("prepare");
    }
    Bind(st, 1, t.accessor);
    Bind(st, 2, t.secret_hash);
    Bind(st, 3, t.json);
    sqlite3_bind_int64(st, 4, t.revoked_ms);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) return Status::Exists("token store: accessor " + t.accessor);
    if (rc != SQLITE_DONE) return Error("insert " + t.accessor);
    return Status::Ok();
  }

  Status Revoke(const std::string& accessor, int64_t at_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "UPDATE tokens SET revoked_ms=? WHERE accessor=?", -1, &st,
                           nullptr) != SQLITE_OK) {
      return Error("prepare");
    }
    sqlite3_bind_int64(st, 1, at_ms);
    Bind(st, 2, accessor);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Error("revoke " + accessor);
    if (sqlite3_changes(db_) == 0) return Status::NotFound("no token " + accessor);
    return Status::Ok();
  }

  Result<std::vector<StoredToken>> Load() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<StoredToken> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_,
                           "SELECT accessor, secret_hash, json, revoked_ms FROM tokens "
                           "ORDER BY rowid",
                           -1, &st, nullptr) != SQLITE_OK) {
      return Error("load");
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      out.push_back(
          StoredToken{Text(st, 0), Text(st, 1), Text(st, 2), sqlite3_column_int64(st, 3)});
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Error("load");
    return out;
  }

 private:
  static void Bind(sqlite3_stmt* st, int i, const std::string& s) {
    sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
  }
  static std::string Text(sqlite3_stmt* st, int col) {
    const unsigned char* t = sqlite3_column_text(st, col);
    return t == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(t));
  }
  Status Error(const std::string& what) {
    return Status::Precondition("token store: " + what + ": " + sqlite3_errmsg(db_));
  }

  sqlite3* db_;
  std::mutex mu_;
};

}  // namespace

Result<std::unique_ptr<TokenStore>> OpenSqliteTokenStore(const std::string& path) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return Status::Invalid("token store: cannot open " + path + ": " + msg);
  }
  auto store = std::make_unique<SqliteTokenStore>(db);
  if (Status s = store->Init(); !s.ok()) return s;
  return std::unique_ptr<TokenStore>(std::move(store));
}

}  // namespace gpuorch::store
