"""Input and output: media decoding (media), the paths a user types (inputs), the `avid process` result files
(results) and the writers of a labelled recording (writers: JSON, RTTM, SRT, WebVTT, TXT, PNG, MP4).
"""
