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

  // Schema versions (PRAGMA user_version), each step in one transaction with the data kept:
  //   0  workloads, nodes (gpuorch before accounting; also a new, empty file)
  //   1  + usage: accounting intervals, which outlive the workloads' retention
  Status Init() {
    if (Status s = Exec("PRAGMA journal_mode=WAL;"
                        "PRAGMA synchronous=FULL;"
                        "PRAGMA busy_timeout=5000;");
        !s.ok()) {
      return s;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (Status s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
    Status s = Migrate();
    if (!s.ok()) {
      (void)Exec("ROLLBACK;");
      return s;
    }
    return Exec("COMMIT;");
  }

  Status Migrate() {
    int version = 0;
    if (Status s = Int("PRAGMA user_version", version); !s.ok()) return s;
    if (version > kSchemaVersion) {
      return Status::Invalid("store: the database has schema version " + std::to_string(version) +
                             ", newer than this gpuorch knows (" + std::to_string(kSchemaVersion) +
                             "): run a newer gpuorch");
    }
    if (version < 1) {
      const char* v1 =
          "CREATE TABLE IF NOT EXISTS workloads ("
          "  id INTEGER PRIMARY KEY, state TEXT NOT NULL, spec TEXT NOT NULL,"
          "  status TEXT NOT NULL);"
          "CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, json TEXT NOT NULL);"
          "CREATE TABLE IF NOT EXISTS usage ("
          "  id INTEGER PRIMARY KEY, workload INTEGER NOT NULL, attempt INTEGER NOT NULL,"
          "  task INTEGER NOT NULL, queue TEXT NOT NULL, user_name TEXT NOT NULL,"
          "  model TEXT NOT NULL, gpu_milli INTEGER NOT NULL, start_ms INTEGER NOT NULL,"
          "  end_ms INTEGER NOT NULL);"
          "CREATE INDEX IF NOT EXISTS usage_by_end ON usage(end_ms);"
          "PRAGMA user_version=1;";
      if (Status s = Exec(v1); !s.ok()) return s;
    }
    return Status::Ok();
  }

  Status Commit(const Batch& batch) override {
    if (batch.empty()) return Status::Ok();
    std::lock_guard<std::mutex> lock(mu_);
    if (Status s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
    Status s = Write(batch);
    if (s.ok()) s = Exec("COMMIT;");
    // A failed COMMIT (SQLITE_BUSY, SQLITE_FULL, SQLITE_IOERR) may leave the transaction
    // open: roll it back, so that the batch can be retried from a clean state
    // (GroupCommitter does) and the next BEGIN does not fail for good.
    if (!s.ok() && !sqlite3_get_autocommit(db_)) (void)Exec("ROLLBACK;");
    return s;
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

  Result<std::vector<UsageTotal>> SumUsage(int64_t from_ms, int64_t to_ms,
                                           int64_t below_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<UsageTotal> out;
    sqlite3_stmt* st = nullptr;
    // The index on end_ms finds the intervals that end after the range starts; those that
    // also start before it ends overlap it.
    if (sqlite3_prepare_v2(db_,
                           "SELECT queue, user_name, model,"
                           "  SUM(gpu_milli * (MIN(end_ms, ?2) - MAX(start_ms, ?1))), COUNT(*)"
                           " FROM usage WHERE end_ms > ?1 AND start_ms < ?2 AND id < ?3"
                           " GROUP BY queue, user_name, model ORDER BY queue, user_name, model",
                           -1, &st, nullptr) != SQLITE_OK) {
      return Error("sum usage");
    }
    sqlite3_bind_int64(st, 1, from_ms);
    sqlite3_bind_int64(st, 2, to_ms);
    sqlite3_bind_int64(st, 3, below_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      out.push_back(UsageTotal{Text(st, 0), Text(st, 1), Text(st, 2), sqlite3_column_int64(st, 3),
                               sqlite3_column_int64(st, 4)});
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Error("sum usage");
    return out;
  }

  Result<int64_t> MaxUsageId() override {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t id = 0;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT COALESCE(MAX(id), 0) FROM usage", -1, &st, nullptr) !=
        SQLITE_OK) {
      return Error("usage ids");
    }
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return Error("usage ids");
    return id;
  }

 private:
  // The single integer a query returns (a PRAGMA's value).
  Status Int(const char* sql, int& out) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return Error(sql);
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? Status::Ok() : Error(sql);
  }

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
    sqlite3_stmt* u = nullptr;
    if (sqlite3_prepare_v2(db_, "DELETE FROM workloads WHERE id = ?", -1, &d, nullptr) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db_,
                           "INSERT OR IGNORE INTO usage(id, workload, attempt, task, queue,"
                           " user_name, model, gpu_milli, start_ms, end_ms)"
                           " VALUES(?,?,?,?,?,?,?,?,?,?)",
                           -1, &u, nullptr) != SQLITE_OK ||
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
      sqlite3_finalize(u);
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
    for (const UsageRecord& r : batch.usage) {
      if (!result.ok()) break;
      sqlite3_bind_int64(u, 1, r.id);
      sqlite3_bind_int64(u, 2, r.workload);
      sqlite3_bind_int(u, 3, r.attempt);
      sqlite3_bind_int(u, 4, r.task);
      sqlite3_bind_text(u, 5, r.queue.data(), static_cast<int>(r.queue.size()), SQLITE_STATIC);
      sqlite3_bind_text(u, 6, r.user.data(), static_cast<int>(r.user.size()), SQLITE_STATIC);
      sqlite3_bind_text(u, 7, r.model.data(), static_cast<int>(r.model.size()), SQLITE_STATIC);
      sqlite3_bind_int64(u, 8, r.gpu_milli);
      sqlite3_bind_int64(u, 9, r.start_ms);
      sqlite3_bind_int64(u, 10, r.end_ms);
      if (sqlite3_step(u) != SQLITE_DONE) result = Error("write usage " + std::to_string(r.id));
      sqlite3_reset(u);
    }
    sqlite3_finalize(w);
    sqlite3_finalize(n);
    sqlite3_finalize(d);
    sqlite3_finalize(u);
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
