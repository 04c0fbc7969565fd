-- Bulletins read the outcomes of the 差评 pressed in a period (gateway/complaint_figures.py):
-- complaints by their rating's press time.
CREATE INDEX complaints_rated ON complaints(rated_ms);
