# Configuration of reddit_extractor/Makefile (the published "Makefile.local" knobs).
# Relative paths are relative to reddit_extractor/. Any of these can be overridden on the
# command line: make -C reddit_extractor MIN_SCORE=2 S=/data/pushshift

# Minimum number of turns (context + response):
MIN_DEPTH ?= 2
# Maximum number of comment turns kept in a chain:
MAX_DEPTH ?= 5
# Minimum score of a response:
MIN_SCORE ?= 1
# 1: the submission title is the first turn:
TITLE ?= 0
# 1: only comments without replies are responses (training unrolls the turns):
LEAVES_ONLY ?= 1
# Submissions per split (conv holds one split in memory at a time):
SPLIT_SIZE ?= 500000

# Blocklists: the shipped files hold a few placeholder entries only; replace them with
# the published lists (or your own) for real use. Set to empty to disable.
WORDS_BLOCKLIST ?= lists/words.blocklist.txt
SUBREDDITS_BLOCKLIST ?= lists/subreddits.blocklist.txt

# Key files (published keys-full.tar: K/YYYY-MM.gz keep keys, K/YYYY-MM-o.gz discard keys)
# make the extraction reproduce the published data set exactly. USE_KEYS=0 ignores them,
# which is what you want for dumps the keys were not made for.
USE_KEYS ?= 0
K ?= data/keys
# Keys and reference ids of the multi-reference test set (SIZE=full):
TEST_KEYS ?= data/keys-test.gz
MULTIREF_IDS ?= data/test-multi-refs-ids.txt

# Input dumps (RS_/RC_YYYY-MM.{zst,xz,bz2,gz,json}), work folder, final data folder:
S ?= data/reddit
T ?= data/out
DATA ?= ../data

# Where `make download` fetches dumps from, and in which compression:
U ?= https://files.pushshift.io/reddit
DUMP_EXT ?= zst

# conv worker processes per month (0: all cores); with make -j N, use cores / N.
WORKERS ?= 0
