// The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a commit is on
// disk when it returns. SQLite because it is the most tested embedded database there is,
// needs no server, and gives atomic multi-row transactions; callers batch writes (group
// commit) so that one fsync covers many submissions.
#include <sqlite3.h>

#include <mutex>

#include "store/state_store.h"

namespace gpuorch::store {
namespace {

using core::Result;
using core::Status;

class SqliteStore final : public StateStore {
 public:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close_v2(db_); }

  Status Init() {
    const char* schema =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=FULL;"
        "PRAGMA busy_timeout=5000;"
        "CREATE TABLE IF NOT EXISTS workloads ("
        "  id INTEGER PRIMARY KEY, state TEXT NOT NULL, spec TEXT NOT NULL,"
        "  status TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, json TEXT NOT NULL);";
    return Exec(schema);
  }

  Status Commit(const Batch& batch) override {
    if (batch.empty()) return Status::Ok();
    std::lock_guard<std::mutex> lock(mu_);
    if (Status s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
    Status s = Write(batch);
    if (!s.ok()) {
      (void)Exec("ROLLBACK;");
      return s;
    }
    return Exec("COMMIT;");
  }

  Result<std::vector<StoredWorkload>> LoadWorkloads() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<StoredWorkload> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT id, state, spec, status FROM workloads ORDER BY id", -1,
                           &st, nullptr) != SQLITE_OK) {
      return Error("load workloads");
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      out.push_back(
          StoredWorkload{sqlite3_column_int64(st, 0), Text(st, 1), Text(st, 2), Text(st, 3)});
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Error("load workloads");
    return out;
  }

  Result<std::vector<StoredNode>> LoadNodes() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<StoredNode> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT name, json FROM nodes ORDER BY name", -1, &st, nullptr) !=
        SQLITE_OK) {
      return Error("load nodes");
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) out.push_back({Text(st, 0), Text(st, 1)});
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Error("load nodes");
    return out;
  }

 private:
  static std::string Text(sqlite3_stmt* st, int col) {
    const unsigned char* t = sqlite3_column_text(st, col);
    return t == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(t));
  }

  Status Error(const std::string& what) {
    return Status(core::StatusCode::kFailedPrecondition,
                  "store: " + what + ": " + sqlite3_errmsg(db_));
  }

  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return Status(core::StatusCode::kFailedPrecondition, "store: " + msg);
    }
    return Status::Ok();
  }

  Status Write(const Batch& batch) {
    sqlite3_stmt* w = nullptr;
    sqlite3_stmt* n = nullptr;
    sqlite3_stmt* d = nullptr;
    if (sqlite3_prepare_v2(db_, "DELETE FROM workloads WHERE id = ?", -1, &d, nullptr) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db_,
                           "INSERT INTO workloads(id, state, spec, status) VALUES(?,?,?,?) "
                           "ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                           "status=excluded.status",
                           -1, &w, nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(db_,
                           "INSERT INTO nodes(name, json) VALUES(?,?) "
                           "ON CONFLICT(name) DO UPDATE SET json=excluded.json",
                           -1, &n, nullptr) != SQLITE_OK) {
      sqlite3_finalize(w);
      sqlite3_finalize(n);
      sqlite3_finalize(d);
      return Error("prepare");
    }
    Status result = Status::Ok();
    for (const StoredWorkload& r : batch.workloads) {
      sqlite3_bind_int64(w, 1, r.id);
      sqlite3_bind_text(w, 2, r.state.data(), static_cast<int>(r.state.size()), SQLITE_STATIC);
      sqlite3_bind_text(w, 3, r.spec_json.data(), static_cast<int>(r.spec_json.size()),
                        SQLITE_STATIC);
      sqlite3_bind_text(w, 4, r.status_json.data(), static_cast<int>(r.status_json.size()),
                        SQLITE_STATIC);
      if (sqlite3_step(w) != SQLITE_DONE) {
        result = Error("write workload " + std::to_string(r.id));
        break;
      }
      sqlite3_reset(w);
    }
    for (const StoredNode& r : batch.nodes) {
      if (!result.ok()) break;
      sqlite3_bind_text(n, 1, r.name.data(), static_cast<int>(r.name.size()), SQLITE_STATIC);
      sqlite3_bind_text(n, 2, r.json.data(), static_cast<int>(r.json.size()), SQLITE_STATIC);
      if (sqlite3_step(n) != SQLITE_DONE) result = Error("write node " + r.name);
      sqlite3_reset(n);
    }
    for (int64_t id : batch.deleted_workloads) {
      if (!result.ok()) break;
      sqlite3_bind_int64(d, 1, id);
      if (sqlite3_step(d) != SQLITE_DONE) result = Error("delete workload " + std::to_string(id));
      sqlite3_reset(d);
    }
    sqlite3_finalize(w);
    sqlite3_finalize(n);
    sqlite3_finalize(d);
    return result;
  }

  sqlite3* db_;
  std::mutex mu_;
};

}  // namespace

Result<std::unique_ptr<StateStore>> OpenSqliteStore(const std::string& path) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return Status::Invalid("store: cannot open " + path + ": " + msg);
  }
  auto store = std::make_unique<SqliteStore>(db);
  if (Status s = store->Init(); !s.ok()) return s;
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace gpuorch::store
