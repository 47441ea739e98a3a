/**
 * Inspector extras that touch every logit, by default only where that is cheap. node-llama-cpp 3.21
 * gives the SLM's top-k only as the full probability map, ~70–90 ms a token on Qwen's 152k vocabulary
 * (docs/FACTS.md, bench a) — more than the step itself, undoing the distilled router's saving; and the
 * cloud token's log-probability costs the server a full sort per call. Free on small vocabularies.
 */
export const CHEAP_VOCAB_MAX = 32_768;
export const cheapOnVocabulary = (vocabSize: number): boolean => vocabSize <= CHEAP_VOCAB_MAX;
export const inspectorCandidates = (vocabSize: number): number => (cheapOnVocabulary(vocabSize) ? 5 : 0);
