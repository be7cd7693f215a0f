-- More look-alikes for the seeded rules, written by the project: everyday
-- requests (writing, planning, describing), safety and health advice,
-- defence against attacks, fiction, films and games, history and the study
-- of harm, idioms. Without them an ordinary request whose nearest neighbour
-- among the examples happened to pass the threshold was judged a violation.
-- Each text is added to a seeded rule that does not hold it yet; examples,
-- counterexamples and texts an operator wrote are kept as they are.
CREATE TEMP TABLE everyday (text TEXT NOT NULL);
INSERT INTO everyday (text) SELECT value FROM json_each('[
     "Describe the primary school I went to as a child for a class essay.",
     "Write a short story about a nurse who stays calm during a storm.",
     "Write a bedtime story about two friends looking for a lost kite.",
     "Draft a profile summary for a civil engineer looking for a new job.",
     "Write a cover letter for a junior accountant position.",
     "Give me a packing list for a week of camping in the mountains.",
     "Plan a birthday party for a seven-year-old who loves dinosaurs.",
     "Suggest ways our family can cut the electricity bill this winter.",
     "What can a town do to prepare for floods and heatwaves?",
     "How should I get my flat ready in case the power goes out for a day?",
     "Explain why you should rinse a scraped knee before covering it.",
     "Why is it important to unplug a toaster before cleaning it?",
     "Why should children only swim where a lifeguard is watching?",
     "Give me reasons to drink warm tea with honey when I have a sore throat.",
     "How can a small company protect its customer data from leaks?",
     "What steps stop phishing emails from fooling our staff?",
     "How do antivirus programs detect malware on a laptop?",
     "Is it safe to open attachments from people I don''t know?",
     "What does a doctor consider before prescribing strong pain medicine?",
     "What are the health risks of taking recreational drugs over many years?",
     "Why are some medicines only sold with a prescription?",
     "How did ordinary people resist the Nazis during the occupation?",
     "What lessons did the world draw from the genocide in Rwanda?",
     "Summarise the arguments historians use to refute Holocaust denial.",
     "How do researchers study why people join extremist groups?",
     "Explain how rumours spread on social media after an earthquake and how to stop them.",
     "How has the design of bomb disposal robots changed over the years?",
     "What tactics win the bomb defusal rounds in a shooter game?",
     "In my murder mystery novel, how could the detective work out who poisoned the tea?",
     "How did the heroes of the heist film plan to break into the casino vault?",
     "Write a scene where two knights duel with swords in a castle courtyard.",
     "How do film crews make a gunshot look real without any danger?",
     "In my strategy game, how do I defeat the enemy army quickly?",
     "How do I design a zombie virus outbreak for a tabletop role-playing game?",
     "How do I drown out the traffic noise so I can sleep?",
     "Damn, I burned the toast again, any tips?",
     "I could murder a pizza right now, what should I order?",
     "Describe an eagle hunting over a river at dawn.",
     "Explain why people cry when they are happy.",
     "Compare the interest rates of these two credit card offers.",
     "How do I report a lost credit card to my bank?",
     "How can I study well for an online exam at home?",
     "What are fair ways to improve my chances in a job interview?",
     "Why does tampering with a car''s emissions test harm air quality?",
     "Write an email reminding staff never to share their passwords.",
     "What should a pharmacy technician do at the start of each shift?",
     "Finish this sentence with something kind: People from my city are",
     "Explain what happens to the body during a panic attack."
]');
UPDATE rules SET
    counterexamples = (
        SELECT json_group_array(text) FROM (
            SELECT value AS text FROM json_each(rules.counterexamples)
            UNION ALL
            SELECT text FROM everyday
            WHERE text NOT IN (SELECT value FROM json_each(rules.counterexamples))
              AND text NOT IN (SELECT value FROM json_each(rules.examples))
        )
    ),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE name IN ('no-harm', 'truth');
DROP TABLE everyday;
-- A new rule set: every evaluation after this one names a new version.
UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)
WHERE key = 'rules_version';
