#include "gateway/reconcile.h"

#include <algorithm>
#include <set>

namespace gpuorch::gateway {

std::string RouteKey(const std::string& service_name) { return "/svc/" + service_name + "/"; }

std::string ServerName(const Replica& r) {
  std::string addr = r.address;
  const size_t colon = addr.rfind(':');
  if (colon != std::string::npos) addr[colon] = '_';
  for (char& c : addr) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '-';
  }
  return "w" + std::to_string(r.workload) + "_" + addr;
}

int64_t WorkloadOfServer(const std::string& server_name) {
  if (server_name.size() < 3 || server_name[0] != 'w') return -1;
  int64_t v = 0;
  size_t i = 1;
  for (; i < server_name.size() && std::isdigit(static_cast<unsigned char>(server_name[i])); ++i)
    v = v * 10 + (server_name[i] - '0');
  if (i == 1 || i >= server_name.size() || server_name[i] != '_') return -1;
  return v;
}

bool RoutableName(const std::string& name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

Plan Reconcile(const std::vector<Service>& desired, const Observed& observed,
               const std::string& map_file) {
  Plan plan;
  std::map<std::string, std::string> route_backend;  // key -> backend
  for (const MapEntry& e : observed.routes) route_backend[e.key] = e.value;
  std::map<std::string, std::vector<const ServerState*>> servers_of;
  for (const ServerState& s : observed.servers) servers_of[s.backend].push_back(&s);

  // Routes: keep those of listed services, drop the others, give new services a free slot.
  std::set<std::string> wanted_keys;
  std::map<std::string, const Service*> service_of_backend;
  std::vector<const Service*> sorted;
  for (const Service& s : desired) sorted.push_back(&s);
  std::sort(sorted.begin(), sorted.end(),
            [](const Service* a, const Service* b) { return a->id < b->id; });
  for (const Service* s : sorted) {
    if (!RoutableName(s->name)) {
      plan.problems.push_back("service " + std::to_string(s->id) + " '" + s->name +
                              "': name is not routable ([A-Za-z0-9._-]+)");
      continue;
    }
    wanted_keys.insert(RouteKey(s->name));
  }
  std::set<std::string> used;  // backends that a kept route points at, or that hold servers
  for (const auto& [key, backend] : route_backend) {
    if (wanted_keys.count(key)) {
      used.insert(backend);
    } else {
      plan.commands.push_back("del map " + map_file + " " + key);
    }
  }
  for (const auto& [backend, list] : servers_of) {
    if (!list.empty()) used.insert(backend);
  }
  for (const Service* s : sorted) {
    if (!RoutableName(s->name)) continue;
    const std::string key = RouteKey(s->name);
    auto it = route_backend.find(key);
    std::string backend;
    if (it != route_backend.end()) {
      backend = it->second;
    } else {
      for (const std::string& slot : observed.slots) {
        if (!used.count(slot)) {
          backend = slot;
          break;
        }
      }
      if (backend.empty()) {
        plan.problems.push_back("service " + std::to_string(s->id) + " '" + s->name +
                                "': no free backend slot (all " +
                                std::to_string(observed.slots.size()) +
                                " in use; write the configuration with more --slots)");
        continue;
      }
      used.insert(backend);
      plan.commands.push_back("add map " + map_file + " " + key + " " + backend);
    }
    plan.backend_of[s->id] = backend;
    service_of_backend[backend] = s;
  }

  // Servers, backend by backend.
  for (const std::string& backend : observed.slots) {
    std::map<std::string, const ServerState*> present;
    for (const ServerState* s : servers_of[backend]) present[s->name] = s;
    std::set<std::string> listed;
    auto set_state = [&](const std::string& name, const char* state) {
      plan.commands.push_back("set server " + backend + "/" + name + " state " + state);
    };
    auto it = service_of_backend.find(backend);
    if (it != service_of_backend.end()) {
      for (const Replica& r : it->second->replicas) {
        const std::string name = ServerName(r);
        listed.insert(name);
        auto p = present.find(name);
        if (r.draining) {
          if (p != present.end() && !p->second->drain() && !p->second->maint())
            set_state(name, "drain");
        } else if (r.ready) {
          if (p == present.end()) {
            plan.commands.push_back("add server " + backend + "/" + name + " " + r.address);
            set_state(name, "ready");
          } else if (!p->second->ready()) {
            set_state(name, "ready");
          }
        } else if (p != present.end() && !p->second->maint()) {
          set_state(name, "maint");
        }
      }
    }
    for (const auto& [name, s] : present) {
      if (listed.count(name)) continue;
      auto sess = observed.sessions.find({backend, name});
      if (sess != observed.sessions.end() && sess->second == 0) {
        if (!s->maint()) set_state(name, "maint");
        plan.commands.push_back("del server " + backend + "/" + name);
      } else if (!s->drain() && !s->maint()) {
        set_state(name, "drain");
      }
    }
  }
  return plan;
}

}  // namespace gpuorch::gateway
