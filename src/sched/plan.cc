#include "sched/plan.h"

namespace gpuorch::sched {

const char* ToString(PendingReason r) {
  switch (r) {
    case PendingReason::kWaitingForQuota:
      return "WaitingForQuota";
    case PendingReason::kOverLimit:
      return "OverLimit";
    case PendingReason::kNoFit:
      return "NoFit";
    case PendingReason::kTopologyUnsatisfiable:
      return "TopologyUnsatisfiable";
    case PendingReason::kModelUnavailable:
      return "ModelUnavailable";
    case PendingReason::kBlockedByReservation:
      return "BlockedByReservation";
    case PendingReason::kPreempting:
      return "Preempting";
    case PendingReason::kReserved:
      return "Reserved";
    case PendingReason::kUnschedulable:
      return "Unschedulable";
    case PendingReason::kMigReconfiguring:
      return "MigReconfiguring";
  }
  return "?";
}

const char* ToString(EvictionReason r) {
  switch (r) {
    case EvictionReason::kReclaimGuarantee:
      return "ReclaimGuarantee";
    case EvictionReason::kPriority:
      return "Priority";
    case EvictionReason::kReservationReady:
      return "ReservationReady";
    case EvictionReason::kNodeLost:
      return "NodeLost";
    case EvictionReason::kHarvested:
      return "Harvested";
  }
  return "?";
}

}  // namespace gpuorch::sched
