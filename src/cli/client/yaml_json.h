#pragma once

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <string>

namespace gpuorch::cli {

// Converts a parsed YAML document to JSON so that spec files in either syntax become the
// same request body. Quoted scalars stay strings ("3" is a string); plain scalars resolve
// like YAML 1.2's core schema plus yes/no/on/off booleans, because users write
// `preemptible: yes`. Integers stay integers (the API has no floats in accounting).
// Throws YAML::Exception only for documents yaml-cpp itself rejects while walking.
nlohmann::json YamlToJson(const YAML::Node& node);

// Block-style YAML for `-o yaml`. Strings that a YAML reader would take for a number, a
// boolean or null are quoted, so the output reads back as the same JSON.
std::string JsonToYaml(const nlohmann::json& value);

}  // namespace gpuorch::cli
