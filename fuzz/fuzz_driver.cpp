// Standalone driver for the fuzz targets in this folder. Each target defines
// LLVMFuzzerTestOneInput, so the same file also links against libFuzzer
// where a compiler supports it. This driver replays every file of a seed
// corpus, then runs a fixed number of deterministic mutations of them
// (byte flips, insertions, deletions, splices), so CI exercises the parser
// on thousands of malformed inputs under ASan and UBSan every run.
//
// Usage: FUZZ_TARGET CORPUS_DIR [ITERATIONS] [SEED]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void run(const std::string& input) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::string mutate(std::string s, const std::vector<std::string>& corpus, std::mt19937_64& rng) {
    auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
    int rounds = 1 + static_cast<int>(rng() % 4);
    for (int r = 0; r < rounds; ++r) {
        switch (rng() % 6) {
            case 0:  // flip a bit
                if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
                break;
            case 1:  // insert a random or interesting byte
                s.insert(s.begin() + static_cast<std::ptrdiff_t>(pick(s.size() + 1)),
                         "\0\xff\"\\{}[]:,.\n-"[rng() % 14]);
                break;
            case 2:  // delete a range
                if (!s.empty()) {
                    size_t at = pick(s.size());
                    s.erase(at, 1 + pick(std::min<size_t>(16, s.size() - at)));
                }
                break;
            case 3:  // duplicate a range
                if (!s.empty()) {
                    size_t at = pick(s.size());
                    s.insert(at, s.substr(at, 1 + pick(32)));
                }
                break;
            case 4: {  // splice with another corpus entry
                const std::string& other = corpus[pick(corpus.size())];
                s = s.substr(0, pick(s.size() + 1)) + other.substr(pick(other.size() + 1));
                break;
            }
            default:  // truncate
                s.resize(pick(s.size() + 1));
                break;
        }
    }
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR [ITERATIONS] [SEED]\n", argv[0]);
        return 2;
    }
    long iterations = argc > 2 ? std::atol(argv[2]) : 20000;
    unsigned long long seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1;
    std::vector<std::string> corpus;
    for (const auto& entry : std::filesystem::directory_iterator(argv[1])) {
        std::ifstream in(entry.path(), std::ios::binary);
        corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    if (corpus.empty()) {
        std::fprintf(stderr, "empty corpus: %s\n", argv[1]);
        return 2;
    }
    for (const auto& input : corpus) run(input);
    std::mt19937_64 rng(seed);
    for (long i = 0; i < iterations; ++i)
        run(mutate(corpus[i % static_cast<long>(corpus.size())], corpus, rng));
    std::printf("%zu seeds, %ld mutations: no crash\n", corpus.size(), iterations);
    return 0;
}
