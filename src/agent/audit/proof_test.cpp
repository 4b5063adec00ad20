#include "agent/audit/proof.h"

#include "agent/audit/test_support.h"
#include "common/crypto/encoding.h"

namespace sa::agent::audit {
namespace {

using namespace testing;
using nlohmann::json;

// 37 records; checkpoints at 10, 20, 30 and 37 (close).
class ProofTest : public ::testing::Test {
  protected:
    ProofTest() : key_(make_key(tmp_.path() / "state")) {}

    void SetUp() override {
        auto opened = AuditLog::open(dir(), test_options(10), key_);
        ASSERT_TRUE(opened) << opened.error().describe();
        for (int i = 0; i < 37; ++i) {
            ASSERT_TRUE(opened->log->append("test.event", {{"n", i}}));
            if (i % 10 == 9) {
                ASSERT_TRUE(opened->log->flush());  // checkpoints at 10, 20, 30
            }
        }
        ASSERT_TRUE(opened->log->close());
    }
    std::string dir() const { return (tmp_.path() / "state" / "audit").string(); }

    TempDir tmp_;
    identity::AgentKey key_;
};

std::string flip(const std::string& b64) {
    auto raw = crypto::base64_decode(b64);
    (*raw)[0] = static_cast<char>((*raw)[0] ^ 0x80);
    return crypto::base64_encode(*raw);
}

TEST_F(ProofTest, InclusionProofVerifiesAndFailsWhenAltered) {
    const auto pub = key_.public_key();
    for (uint64_t index : {0u, 1u, 17u, 35u, 36u}) {
        auto proof = inclusion_proof(dir(), index);
        ASSERT_TRUE(proof) << proof.error().describe();
        EXPECT_EQ((*proof)["kind"], "inclusion");
        EXPECT_EQ((*proof)["tree_size"], 37u);
        EXPECT_TRUE(verify_proof(*proof, &pub)) << index;
        EXPECT_TRUE(verify_proof(*proof, nullptr)) << index;

        json bad = *proof;
        bad["leaf_hash"] = flip(bad["leaf_hash"].get<std::string>());
        bad.erase("record");
        EXPECT_FALSE(verify_proof(bad, nullptr));

        bad = *proof;
        bad["proof"][0] = flip(bad["proof"][0].get<std::string>());
        EXPECT_FALSE(verify_proof(bad, nullptr));

        bad = *proof;
        bad["index"] = index == 0 ? 1 : index - 1;
        EXPECT_FALSE(verify_proof(bad, nullptr));

        bad = *proof;
        std::string rec = bad["record"].get<std::string>();
        rec.replace(rec.find("\"n\":"), 4, "\"m\":");
        bad["record"] = rec;
        EXPECT_FALSE(verify_proof(bad, nullptr));

        // A consistent proof under a root the key never signed.
        bad = *proof;
        bad["checkpoint"]["root"] = flip(bad["checkpoint"]["root"].get<std::string>());
        EXPECT_TRUE(verify_proof(bad, nullptr));
        EXPECT_FALSE(verify_proof(bad, &pub));
    }
}

TEST_F(ProofTest, InclusionProofRejectsWrongKey) {
    auto other = make_key(tmp_.path() / "other");
    auto pub = other.public_key();
    auto proof = inclusion_proof(dir(), 3);
    ASSERT_TRUE(proof);
    EXPECT_FALSE(verify_proof(*proof, &pub));
}

TEST_F(ProofTest, InclusionIndexOutsideCheckpointIsRefused) {
    auto proof = inclusion_proof(dir(), 37);
    ASSERT_FALSE(proof);
    EXPECT_EQ(proof.error().code, ErrorCode::invalid_argument);
}

TEST_F(ProofTest, ConsistencyProofsBetweenCheckpoints) {
    const auto pub = key_.public_key();
    for (auto [a, b] :
         {std::pair<uint64_t, uint64_t>{10, 37}, {20, 30}, {10, 20}, {30, 37}, {37, 37}}) {
        auto proof = consistency_proof(dir(), a, b);
        ASSERT_TRUE(proof) << proof.error().describe();
        EXPECT_TRUE(verify_proof(*proof, &pub)) << a << "->" << b;
        if (a == b) continue;
        json bad = *proof;
        bad["root_1"] = flip(bad["root_1"].get<std::string>());
        EXPECT_FALSE(verify_proof(bad, nullptr));
        bad = *proof;
        bad["proof"][0] = flip(bad["proof"][0].get<std::string>());
        EXPECT_FALSE(verify_proof(bad, nullptr));
        bad = *proof;
        // The Merkle path alone may not pin the size; the signed checkpoint does.
        bad["tree_size_2"] = b + 1;
        EXPECT_FALSE(verify_proof(bad, &pub));
    }
}

TEST_F(ProofTest, ConsistencyNeedsCheckpointSizes) {
    auto proof = consistency_proof(dir(), 11, 37);
    ASSERT_FALSE(proof);
    EXPECT_EQ(proof.error().code, ErrorCode::invalid_argument);
    EXPECT_FALSE(consistency_proof(dir(), 0, 37));
    EXPECT_FALSE(consistency_proof(dir(), 37, 10));
}

TEST_F(ProofTest, TamperedRecordsAreNotProven) {
    auto path = fs::path(dir()) / segment_name(1);
    auto lines = read_lines(path);
    lines[4].replace(lines[4].find("\"n\":4"), 5, "\"n\":5");
    write_lines(path, lines);
    auto proof = inclusion_proof(dir(), 4);
    ASSERT_FALSE(proof);
    EXPECT_EQ(proof.error().code, ErrorCode::integrity);
}

TEST(ProofDocument, MalformedDocumentsAreRejected) {
    EXPECT_FALSE(verify_proof(json::object(), nullptr));
    EXPECT_FALSE(verify_proof(json{{"kind", "inclusion"}, {"proof", json::array()}}, nullptr));
    EXPECT_FALSE(verify_proof(json{{"kind", "other"}, {"proof", json::array()}}, nullptr));
}

}  // namespace
}  // namespace sa::agent::audit
