// MIG in the control plane (docs/partitioning.md): an agent registers each GPU's MIG mode
// and layout; the engine's layout changes (Plan::reconfigs) go to the agent in its desired
// list, with a generation per GPU; the agent reports the layout it has after applying one
// (or failing to), and only that report, of that generation, tells the engine the change is
// done, so that nothing is bound on an instance before it exists.
#include <bit>

#include "core/mig.h"
#include "log/logging.h"
#include "server/controller.h"

namespace gpuorch::server {

bool Controller::ParseMigGpu(const Json& g, size_t j, const std::string& model,
                             core::NodeSpec& spec, std::string& field, std::string& why) {
  const std::string f = "gpus[" + std::to_string(j) + "]";
  bool mig = false;
  if (auto m = g.find("mig"); m != g.end()) {
    if (!m->is_boolean()) return field = f + ".mig", why = "must be true or false", false;
    mig = m->get<bool>();
  }
  if (!mig) return true;
  const core::MigModel* table = core::FindMigModel(model);
  if (table == nullptr) {
    // MIG mode on a model gpuorch has no profiles for: the GPU is left out of MIG placement
    // (and of whole-GPU placement, since it cannot run whole-GPU work in MIG mode).
    return field = f + ".mig", why = "model " + model + " has no MIG profiles gpuorch knows", false;
  }
  spec.mig_model = table;
  spec.mig_gpus = static_cast<uint16_t>(spec.mig_gpus | (1u << j));
  std::string text;
  if (auto l = g.find("mig_layout"); l != g.end()) {
    if (!l->is_string()) return field = f + ".mig_layout", why = "must be a string", false;
    text = l->get<std::string>();
  }
  auto layout = core::ParseLayout(*table, text);
  if (!layout.ok()) return field = f + ".mig_layout", why = layout.status().message(), false;
  spec.mig_layouts[j] = *layout;
  return true;
}

void Controller::IngestMigReports(NodeRecord& n, const Json& reports) {
  if (!reports.is_array() || n.spec.mig_model == nullptr) return;
  for (const Json& r : reports) {
    if (!r.is_object() || !r.contains("gpu") || !r["gpu"].is_number_integer() ||
        !r.contains("layout") || !r["layout"].is_string()) {
      log::Warn("mig_report_ignored", {{"node", n.name}, {"why", "needs gpu and layout"}});
      continue;
    }
    const int64_t gpu = r["gpu"].get<int64_t>();
    if (gpu < 0 || gpu >= n.spec.gpu_count || !((n.spec.mig_gpus >> gpu) & 1u)) {
      log::Warn("mig_report_ignored", {{"node", n.name}, {"gpu", gpu}, {"why", "not a MIG GPU"}});
      continue;
    }
    const std::string text = r["layout"].get<std::string>();
    auto layout = core::ParseLayout(*n.spec.mig_model, text);
    if (!layout.ok()) {
      log::Warn("mig_report_ignored",
                {{"node", n.name}, {"gpu", gpu}, {"why", layout.status().message()}});
      continue;
    }
    int64_t generation = 0;
    if (auto g = r.find("generation"); g != r.end()) {
      if (!g->is_number_integer()) {
        log::Warn("mig_report_ignored",
                  {{"node", n.name}, {"gpu", gpu}, {"why", "generation must be an integer"}});
        continue;
      }
      generation = g->get<int64_t>();
    }
    const int j = static_cast<int>(gpu);
    if (auto e = r.find("error"); e != r.end() && e->is_string()) {
      log::Warn("mig_layout_failed", {{"node", n.name},
                                      {"gpu", gpu},
                                      {"generation", generation},
                                      {"error", e->get<std::string>()},
                                      {"layout", text}});
    }
    const bool changed = !(n.spec.mig_layouts[j] == *layout);
    n.spec.mig_layouts[j] = *layout;
    Json& reg_gpus = n.registration["gpus"];
    if (reg_gpus.is_array() && static_cast<size_t>(j) < reg_gpus.size()) {
      reg_gpus[static_cast<size_t>(j)]["mig_layout"] =
          core::FormatLayout(*n.spec.mig_model, *layout);
    }
    if (changed) dirty_nodes_.insert(n.name);  // a restarted server adopts on these layouts
    // While a change is asked for, only the report of its generation (applied or failed)
    // ends it; an older report only says where the agent is.
    auto desired = n.mig_desired.find(j);
    if (desired != n.mig_desired.end()) {
      if (generation != desired->second.generation) continue;
      n.mig_desired.erase(desired);
    } else if (!changed) {
      continue;
    }
    Enqueue(EngineEvent{EngineEvent::Kind::kMigLayout, 0, j, n.name, text});
    Kick();
  }
}

void Controller::MigLayoutToEngine(const EngineEvent& e) {
  auto it = nodes_.find(e.node);
  if (it == nodes_.end() || !it->second.in_engine || it->second.spec.mig_model == nullptr) return;
  auto layout = core::ParseLayout(*it->second.spec.mig_model, e.layout);
  if (!layout.ok()) return;
  if (core::Status s = engine_->MigLayoutApplied(it->second.id, e.task, *layout); !s.ok()) {
    // The report drops an instance a task holds (an agent that lost its MIG state): the
    // engine keeps its own layout, and a change it waited for ends all the same, so that
    // the GPU does not stay closed to new work.
    log::Warn("mig_layout_refused", {{"node", e.node},
                                     {"gpu", e.task},
                                     {"why", s.message()},
                                     {"outcome", "the engine keeps its layout"}});
    const sched::MigNodeState& m = engine_->cluster().mig(it->second.id);
    (void)engine_->MigLayoutApplied(it->second.id, e.task, m.layout[e.task]);
  }
}

void Controller::ReportRegisteredLayouts(const NodeRecord& n) {
  // A layout change asked of the agent before it (re)registered will not be reported: the
  // registered layout is what the GPU has, and the engine hears it like a report.
  if (n.spec.mig_model == nullptr) return;
  for (int j = 0; j < n.spec.gpu_count; ++j) {
    if (!((n.spec.mig_gpus >> j) & 1u)) continue;
    Enqueue(EngineEvent{EngineEvent::Kind::kMigLayout, 0, j, n.name,
                        core::FormatLayout(*n.spec.mig_model, n.spec.mig_layouts[j])});
  }
}

void Controller::ApplyReconfigs(const sched::Plan& plan) {
  for (const sched::MigReconfig& r : plan.reconfigs) {
    NodeRecord& n = nodes_.at(node_names_[r.node.value()]);
    if (n.spec.mig_model == nullptr) continue;
    const std::string text = core::FormatLayout(*n.spec.mig_model, r.layout);
    n.mig_desired[r.gpu] = NodeRecord::MigDesired{text, ++n.mig_generation};
    ++n.desired_version;
    AnswerWatches(n, false);
    log::Info("mig_reconfigure", {{"node", n.name},
                                  {"gpu", r.gpu},
                                  {"layout", text},
                                  {"generation", n.mig_generation},
                                  {"for_workload", r.for_workload.value()}});
    if (auto w = workloads_.find(r.for_workload.value()); w != workloads_.end()) {
      Event(w->second, "MigReconfiguring",
            "node " + n.name + " GPU " + std::to_string(r.gpu) + " changes to MIG layout " + text);
    }
  }
}

Json Controller::MigDesiredJson(const NodeRecord& n) const {
  Json out = Json::array();
  for (const auto& [gpu, d] : n.mig_desired) {
    out.push_back(Json{{"gpu", gpu}, {"layout", d.layout}, {"generation", d.generation}});
  }
  return out;
}

Json Controller::TaskMigJson(const TaskRecord& t) const {
  return Json{{"gpu", t.gpus.empty() ? 0 : t.gpus.front()},
              {"start", t.mig_start},
              {"profile", t.mig_profile}};
}

void Controller::SetTaskMig(TaskRecord& t, const sched::TaskBinding& tb) const {
  if (tb.mig_start < 0) return;
  t.mig_start = tb.mig_start;
  const NodeRecord& n = nodes_.at(t.node);
  const int gpu = std::countr_zero(tb.gpus);
  if (n.spec.mig_model == nullptr) return;
  for (const core::MigInstance& i : n.spec.mig_layouts[gpu].view()) {
    if (i.start == tb.mig_start) t.mig_profile = n.spec.mig_model->profiles[i.profile].name;
  }
}

}  // namespace gpuorch::server
