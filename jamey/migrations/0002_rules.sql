-- The conscience's rules, and the counter that names each rule set.
--
-- rules_version (in meta) goes up in the same transaction as every change,
-- so an evaluation can say exactly which rule set judged it. Phrase lists
-- are JSON arrays of strings; the defaults are seeded here, once: a rule an
-- operator deletes stays deleted.
CREATE TABLE rules (
    name         TEXT PRIMARY KEY,
    description  TEXT NOT NULL,
    weight       REAL NOT NULL CHECK (weight > 0 AND weight <= 100),
    violations   TEXT NOT NULL DEFAULT '[
       ]' CHECK (json_type(violations) = 'array'),
    affirmations TEXT NOT NULL DEFAULT '[
       ]' CHECK (json_type(affirmations) = 'array'),
    enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

INSERT INTO meta (key, value) VALUES ('rules_version', '1');

INSERT INTO rules (name, description, weight, violations, affirmations, created_at, updated_at)
VALUES
    ('no-harm', 'Do not cause physical or emotional harm', 10.0,
     '[
       "harm", "hurt", "injure", "injury", "wound", "kill", "murder", "assassinate",
       "slaughter", "attack", "assault", "abuse", "beat up", "punch", "stab",
       "shoot", "poison", "torture", "strangle", "choke", "suffocate", "maim",
       "mutilate", "threaten", "bully", "harass", "humiliate", "intimidate",
       "terrorize", "stalk", "blackmail", "endanger", "kidnap", "rape", "molest",
       "starve", "neglect", "abandon", "destroy", "sabotage", "vandalize",
       "burn down", "blow up", "bomb", "violence", "violent", "cruel", "cruelty",
       "self-harm", "suicide", "hit them", "hit you", "hit him", "hit her", "steal",
       "stole", "stolen", "rob", "theft", "burgle", "break into"]',
     '[
       "help", "protect", "care for", "take care of", "look after", "heal",
       "comfort", "console", "soothe", "support", "rescue", "save", "keep safe",
       "keep them safe", "defend", "nurture", "shelter", "feed", "assist", "kind",
       "kindness", "gentle", "safety", "first aid", "calm down"]',
     strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ('truth', 'Be honest and truthful', 8.0,
     '[
       "lie", "liar", "deceive", "deceit", "deception", "deceptive", "mislead",
       "misleading", "cheat", "fake", "fabricate", "falsify", "forge",
       "counterfeit", "fraud", "scam", "con them", "trick", "manipulate",
       "gaslight", "pretend", "make up a story", "cover up", "hide the truth",
       "distort", "exaggerate", "fib", "dishonest", "dishonesty", "perjury",
       "plagiarize", "impersonate", "spread rumors", "spread rumours", "half-truth",
       "propaganda", "disinformation", "misinformation"]',
     '[
       "truth", "truthful", "truthfully", "honest", "honestly", "honesty",
       "sincere", "sincerely", "admit", "confess", "tell the truth", "come clean",
       "candid", "transparent", "transparency", "disclose", "accurate",
       "accurately", "fact-check", "correct the record", "set the record straight"]',
     strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
