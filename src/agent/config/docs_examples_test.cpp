// Every config example of docs/secrets.md, and every YAML example of
// docs/jobs.md (policy files and agent config), is parsed by the real
// parser, so the operator's guides cannot drift from the code.
//
// A ```yaml block that contains "secret_stores:" is a config example, unless
// the nearest non-blank line before its fence is "<!-- not-a-config -->"
// (for deliberately partial snippets). The block is parsed with yaml-cpp and
// its top-level keys are merged into a minimal valid config: a mapping in
// both (agent, hub, secret_stores, egress, ...) gets the block's entries,
// anything else is replaced by the block's value. Nothing of the block is
// dropped or rewritten, so a wrong key, a bare-string secret or an unknown
// section still reaches parse_config and fails. The only addition: a store
// the block references ({secret: "STORE/..."}) without defining it is added
// as a file store, as the docs often show a remote store alone; and a block
// that sets hub.private_key drops the base's hub.client_secret (the two
// exclude each other).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config/config.h"
#include "agent/jobs/policy.h"
#include "common/util/files.h"

namespace sa::agent::config {
namespace {

constexpr std::string_view kNotAConfig = "<!-- not-a-config -->";
constexpr const char* kBaseStore = "docs-test-files";

// The smallest valid config; its hub secret lives in a store of its own so
// that it never depends on what the block defines.
const char* kBase = R"(agent:
  id: docs-example
  state_dir: /var/lib/secure-agent
hub:
  url: https://hub.example.com
  job_signing_public_key: /etc/secure-agent/job-signing.pub.pem
  client_id: cid_docs
  client_secret: {secret: "docs-test-files/hub-client-secret"}
secret_stores:
  docs-test-files: {type: file, path: /etc/secure-agent/secrets}
)";

struct Block {
    int line = 0;  // 1-based line of the opening fence
    std::string text;
};

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        const size_t end = text.find('\n');
        lines.push_back(text.substr(0, end));
        if (end == std::string_view::npos) break;
        text.remove_prefix(end + 1);
    }
    return lines;
}

// The unmarked ```yaml blocks of a Markdown text (see the file comment). A
// fence indented inside a list item has that indentation removed from its
// lines.
std::vector<Block> yaml_blocks(std::string_view markdown) {
    const auto lines = lines_of(markdown);
    std::vector<Block> blocks;
    for (size_t i = 0; i < lines.size(); ++i) {
        const std::string_view fence = trim(lines[i]);
        if (!fence.starts_with("```")) continue;
        const size_t indent = lines[i].find('`');
        size_t end = i + 1;
        while (end < lines.size() && !trim(lines[end]).starts_with("```")) ++end;
        const bool is_yaml = fence == "```yaml" || fence == "```yml";
        if (is_yaml) {
            std::string text;
            for (size_t j = i + 1; j < end; ++j) {
                std::string_view line = lines[j];
                const size_t cut = std::min(indent, line.find_first_not_of(' '));
                line.remove_prefix(std::min(cut, line.size()));
                text.append(line).append("\n");
            }
            size_t before = i;
            while (before > 0 && trim(lines[before - 1]).empty()) --before;
            const bool marked = before > 0 && trim(lines[before - 1]) == kNotAConfig;
            if (!marked) blocks.push_back({static_cast<int>(i + 1), std::move(text)});
        }
        i = end;  // past the closing fence
    }
    return blocks;
}

// The config examples of the secrets guide: blocks with "secret_stores:".
std::vector<Block> config_blocks(std::string_view markdown) {
    std::vector<Block> blocks;
    for (auto& block : yaml_blocks(markdown)) {
        if (block.text.find("secret_stores:") != std::string::npos) {
            blocks.push_back(std::move(block));
        }
    }
    return blocks;
}

// yaml-cpp keeps duplicate keys; merging would silently collapse them, so a
// block with one is refused here like the config parser would.
void check_no_duplicates(const YAML::Node& node, const std::string& path) {
    if (node.IsMap()) {
        std::set<std::string> seen;
        for (const auto& entry : node) {
            const std::string key = entry.first.IsScalar() ? entry.first.Scalar() : "?";
            if (!seen.insert(key).second) {
                throw std::runtime_error(path + key + ": duplicate key in the example");
            }
            check_no_duplicates(entry.second, path + key + ".");
        }
    } else if (node.IsSequence()) {
        for (size_t i = 0; i < node.size(); ++i) {
            check_no_duplicates(node[i], path + "[" + std::to_string(i) + "].");
        }
    }
}

// Store names of every {secret: "STORE/..."} in the block.
void referenced_stores(const YAML::Node& node, std::set<std::string>& out) {
    if (node.IsMap()) {
        const YAML::Node secret = node["secret"];
        if (node.size() == 1 && secret.IsDefined() && secret.IsScalar()) {
            const std::string& text = secret.Scalar();
            if (const size_t slash = text.find('/'); slash != std::string::npos && slash > 0) {
                out.insert(text.substr(0, slash));
            }
            return;
        }
        for (const auto& entry : node) referenced_stores(entry.second, out);
    } else if (node.IsSequence()) {
        for (const auto& item : node) referenced_stores(item, out);
    }
}

// The full config text: kBase with the block merged in.
std::string merged_config(const std::string& block_text) {
    YAML::Node block = YAML::Load(block_text);
    if (!block.IsMap()) throw std::runtime_error("the example is not a YAML mapping");
    check_no_duplicates(block, "");

    std::set<std::string> referenced;
    referenced_stores(block, referenced);
    YAML::Node base = YAML::Load(kBase);
    YAML::Node stores = base["secret_stores"];
    const YAML::Node defined = block["secret_stores"];
    for (const auto& name : referenced) {
        if (name == kBaseStore) continue;
        if (defined.IsMap() && defined[name].IsDefined()) continue;
        YAML::Node store;
        store["type"] = "file";
        store["path"] = "/etc/secure-agent/secrets";
        stores[name] = store;
    }

    // hub.client_secret and hub.private_key exclude each other: an example
    // that shows the key replaces the base's secret rather than adding to it.
    if (block["hub"].IsMap() && block["hub"]["private_key"].IsDefined()) {
        base["hub"].remove("client_secret");
    }
    for (const auto& entry : block) {
        const std::string key = entry.first.Scalar();
        YAML::Node target = base[key];
        if (target.IsMap() && entry.second.IsMap()) {
            for (const auto& inner : entry.second) target[inner.first.Scalar()] = inner.second;
        } else {
            base[key] = entry.second;
        }
    }
    YAML::Emitter out;
    out << base;
    if (!out.good())
        throw std::runtime_error("cannot emit the merged config: " + out.GetLastError());
    return std::string(out.c_str()) + "\n";
}

// parse_config of the merged config; a block yaml-cpp cannot read, or that
// the merge refuses, is an invalid_argument error as well.
Result<Config> check_block(const std::string& block_text) {
    std::string text;
    try {
        text = merged_config(block_text);
    } catch (const YAML::Exception& e) {
        return fail(ErrorCode::invalid_argument, std::string("YAML: ") + e.what());
    } catch (const std::runtime_error& e) {
        return fail(ErrorCode::invalid_argument, e.what());
    }
    return parse_config(text);
}

std::string error_of(const std::string& block_text) {
    auto config = check_block(block_text);
    EXPECT_FALSE(config) << "accepted:\n" << block_text;
    return config ? std::string() : config.error().message;
}

std::string secrets_doc() {
    auto text = util::read_file(SA_SECRETS_DOC);
    EXPECT_TRUE(text) << SA_SECRETS_DOC << ": " << text.error().describe();
    return text ? *text : std::string();
}

TEST(DocsExamplesTest, EveryConfigExampleOfTheSecretsGuideParses) {
    const std::string doc = secrets_doc();
    const auto blocks = config_blocks(doc);
    // A broken extraction must not pass by checking nothing.
    ASSERT_GE(blocks.size(), 6u);
    for (const auto& block : blocks) {
        auto config = check_block(block.text);
        EXPECT_TRUE(config) << "docs/secrets.md, example at line " << block.line << ": "
                            << (config ? "" : config.error().message) << "\n"
                            << block.text;
    }
}

TEST(DocsExamplesTest, TheSecretsGuideHasATestedExampleOfEveryStoreType) {
    std::set<std::string> types;
    for (const auto& block : config_blocks(secrets_doc())) {
        auto config = check_block(block.text);
        if (!config) continue;  // reported by the test above
        for (const auto& store : config->secret_stores) {
            if (store.name != kBaseStore) types.insert(store.type);
        }
    }
    for (const auto& type : secret_store_types()) {
        EXPECT_TRUE(types.contains(type)) << "no tested example of store type " << type;
    }
}

std::string jobs_doc() {
    auto text = util::read_file(SA_JOBS_DOC);
    EXPECT_TRUE(text) << SA_JOBS_DOC << ": " << text.error().describe();
    return text ? *text : std::string();
}

// docs/jobs.md holds two kinds of YAML: policy files (the first line that is
// not blank or a comment starts with "version:") and agent config, either
// whole (a top-level "agent:") or a fragment merged into kBase like the
// secrets guide's examples.
enum class JobsBlockKind { policy, whole_config, config_fragment };

JobsBlockKind kind_of(const std::string& text) {
    for (const auto line : lines_of(text)) {
        const std::string_view t = trim(line);
        if (t.empty() || t.starts_with('#')) continue;
        if (t.starts_with("version:")) return JobsBlockKind::policy;
        break;
    }
    for (const auto line : lines_of(text)) {
        if (line.starts_with("agent:")) return JobsBlockKind::whole_config;
    }
    return JobsBlockKind::config_fragment;
}

Status check_jobs_block(const std::string& text) {
    switch (kind_of(text)) {
        case JobsBlockKind::policy: {
            auto policy = jobs::parse_policy(text, "policy.yaml");
            if (!policy) return std::unexpected(policy.error());
            return {};
        }
        case JobsBlockKind::whole_config: {
            try {
                check_no_duplicates(YAML::Load(text), "");
            } catch (const YAML::Exception& e) {
                return fail(ErrorCode::invalid_argument, std::string("YAML: ") + e.what());
            } catch (const std::runtime_error& e) {
                return fail(ErrorCode::invalid_argument, e.what());
            }
            auto config = parse_config(text);
            if (!config) return std::unexpected(config.error());
            return {};
        }
        case JobsBlockKind::config_fragment: {
            auto config = check_block(text);
            if (!config) return std::unexpected(config.error());
            return {};
        }
    }
    return fail(ErrorCode::internal, "unreachable");
}

TEST(DocsExamplesTest, EveryYamlExampleOfTheJobsGuideParses) {
    const auto blocks = yaml_blocks(jobs_doc());
    int policies = 0;
    int configs = 0;
    for (const auto& block : blocks) {
        (kind_of(block.text) == JobsBlockKind::policy ? policies : configs) += 1;
        auto checked = check_jobs_block(block.text);
        EXPECT_TRUE(checked) << "docs/jobs.md, example at line " << block.line << ": "
                             << (checked ? "" : checked.error().message) << "\n"
                             << block.text;
    }
    // A broken extraction must not pass by checking nothing.
    EXPECT_GE(policies, 3);
    EXPECT_GE(configs, 2);
}

TEST(DocsExamplesTest, JobsGuideBlocksAreClassifiedAndAWrongOneFails) {
    EXPECT_EQ(kind_of("# a policy\nversion: 1\nrules: []\n"), JobsBlockKind::policy);
    EXPECT_EQ(kind_of("agent:\n  state_dir: /s\n"), JobsBlockKind::whole_config);
    EXPECT_EQ(kind_of("jobs:\n  workers: 2\n"), JobsBlockKind::config_fragment);

    EXPECT_TRUE(check_jobs_block("version: 1\nrules: []\n"));
    EXPECT_TRUE(check_jobs_block("jobs:\n  workers: 4\n  sandbox: {mode: strict}\n"));
    // A wrong policy key, a wrong jobs key and a value out of range all fail
    // with the parser's message.
    auto policy = check_jobs_block(
        "version: 1\nrules:\n  - {name: a, sources: [\"*\"], "
        "operations: [extract_metadata], colour: red}\n");
    ASSERT_FALSE(policy);
    EXPECT_EQ(policy.error().message, "policy.yaml: rules[0].colour: unknown key");
    auto fragment = check_jobs_block("jobs:\n  worker: 2\n");
    ASSERT_FALSE(fragment);
    EXPECT_EQ(fragment.error().message, "jobs.worker: unknown key");
    EXPECT_FALSE(check_jobs_block("jobs:\n  workers: 65\n"));
    // A whole config is parsed alone: without hub: it fails.
    EXPECT_FALSE(check_jobs_block("agent:\n  id: a\n  state_dir: /s\n"));
}

TEST(DocsExamplesTest, ExtractsUnmarkedYamlBlocksWithSecretStoresOnly) {
    const char* markdown = R"(# Title

```yaml
secret_stores:
  a: {type: env}
```

```yaml
log: {level: debug}
```

<!-- not-a-config -->

```yaml
secret_stores:
  partial:
```

```sh
echo "secret_stores:"
```

- In a list:

  ```yaml
  secret_stores:
    b:
      type: file
      path: /s
  ```
)";
    const auto blocks = config_blocks(markdown);
    ASSERT_EQ(blocks.size(), 2u);
    EXPECT_EQ(blocks[0].line, 3);
    EXPECT_EQ(blocks[0].text, "secret_stores:\n  a: {type: env}\n");
    EXPECT_EQ(blocks[1].line, 25);
    EXPECT_EQ(blocks[1].text, "secret_stores:\n  b:\n    type: file\n    path: /s\n");
    for (const auto& block : blocks) {
        auto config = check_block(block.text);
        EXPECT_TRUE(config) << config.error().message;
    }
}

TEST(DocsExamplesTest, AWrongExampleFailsWithTheParsersError) {
    // A typo in a store's key.
    EXPECT_EQ(error_of("secret_stores:\n"
                       "  v:\n"
                       "    type: vault\n"
                       "    adress: https://vault.example.com\n"
                       "    auth: {method: kubernetes, role: r}\n"),
              "secret_stores.v.adress: unknown key for type vault");
    // A bare string where a reference belongs.
    EXPECT_EQ(error_of("secret_stores:\n"
                       "  local: {type: file, path: /s}\n"
                       "  v:\n"
                       "    type: vault\n"
                       "    address: https://vault.example.com\n"
                       "    auth: {method: token, token: local/vault-token}\n"),
              "secret_stores.v.auth.token: literal secrets are not allowed; use {secret: "
              "\"STORE/PATH#KEY\"}");
    // A misspelt section, and a wrong key outside secret_stores.
    EXPECT_EQ(error_of("secret_stores: {}\nsecret_store:\n  a: {type: env}\n"),
              "secret_store: unknown key");
    EXPECT_EQ(error_of("secret_stores:\n  a: {type: env}\n"
                       "egress:\n  allow:\n    - {host: vault.example.com, cidrs: 10.0.0.0/8}\n"),
              "egress.allow[0].cidrs: unknown key");
    // A key of the base config overridden with a wrong value.
    EXPECT_EQ(error_of("secret_stores:\n  a: {type: env}\nhub:\n  client_secret: plain\n"),
              "hub.client_secret: literal secrets are not allowed; use {secret: "
              "\"STORE/PATH#KEY\"}");
    // Duplicates are not collapsed by the merge.
    EXPECT_EQ(error_of("secret_stores:\n  a: {type: env}\n  a: {type: env}\n"),
              "secret_stores.a: duplicate key in the example");
    EXPECT_NE(error_of("secret_stores: [unclosed\n").find("YAML"), std::string::npos);
}

TEST(DocsExamplesTest, StoresTheExampleOnlyReferencesAreAddedAsFileStores) {
    auto config = check_block(
        "secret_stores:\n"
        "  dapr:\n"
        "    type: dapr\n"
        "    dapr_store: vault\n"
        "    api_token: {secret: \"vars/DAPR_API_TOKEN\"}\n");
    ASSERT_TRUE(config) << config.error().message;
    const auto it = std::find_if(config->secret_stores.begin(), config->secret_stores.end(),
                                 [](const auto& s) { return s.name == "vars"; });
    ASSERT_NE(it, config->secret_stores.end());
    EXPECT_EQ(it->type, "file");
    // A store the example defines is kept as it is: a remote store's
    // credentials from another remote store are still refused.
    EXPECT_EQ(error_of("secret_stores:\n"
                       "  gsm: {type: gcp_secret_manager, project: p}\n"
                       "  dapr:\n"
                       "    type: dapr\n"
                       "    dapr_store: vault\n"
                       "    api_token: {secret: \"gsm/dapr-token\"}\n"),
              "secret_stores.dapr.api_token: must name a file or env store (a store's own "
              "credentials cannot come from another remote store)");
}

}  // namespace
}  // namespace sa::agent::config
