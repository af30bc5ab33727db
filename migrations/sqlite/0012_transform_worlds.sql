-- Which version of the transform contract (WIT world) each stored version
-- implements, e.g. 'ionflux:transform@0.2.0', read off the component when
-- it is pushed. Informational: the host reads it again whenever it loads
-- the component. Every version stored before this column existed was
-- checked against 0.1.0, the only world there was.
ALTER TABLE transforms ADD COLUMN world TEXT;
UPDATE transforms SET world = 'ionflux:transform@0.1.0';
