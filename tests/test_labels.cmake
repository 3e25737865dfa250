# Labels of the GoogleTest tests (style.md: cpu, gpu, slow). Their names are known only once
# gtest_discover_tests has listed them, so ctest runs this script after adding them
# (tests/CMakeLists.txt), on the list that discovery leaves in lrsmc_discovered_tests.
#
# gpu: the test reaches the CUDA backend when a device answers (the emulated one included) and
#      skips, or takes the CPU or the error path, without one. scripts/test_cuda_emulation.sh
#      runs these (ctest -L gpu) in the emulation build; every other test runs only in the
#      ordinary build, where it checks the same code. That is every test with Cuda in its name
#      except the host-only ones below, and the two command-line tests whose commands use
#      --device auto: in the emulation build's command line that is the CUDA backend (filter
#      and fit in the workflow; the fallback to the CPU for a rank the kernels do not run), so
#      they check the command line on the device path there. The other CliTest tests name
#      --device cpu (the demo's headline among them) or stop at bad input before any backend is
#      made: a second run would check nothing new. (The gradient's memory plan,
#      GradientMemoryPlan, is compiled only with CUDA or its emulation and labelled cpu: it runs
#      in the ordinary build where nvcc is found, as in CI.)
# cpu: every other test.
# slow: the longest, 9 to 70 s each in the emulation build (the demo's headline in the
#      ordinary build) where every other test takes under 5 s (ctest -j 2 on two shared cores,
#      2026-12-06); they still run in the test command. `ctest -LE slow` leaves them out of a
#      quick run. Their COST (seconds) makes ctest start them first, so that a fresh build
#      folder does not end on one.
set(gpu_tests "Cuda" "^CliTest\\.SimulateFitFilterSampleWorkflow$"
    "^CliTest\\.AutoFallsBackToTheCpuForModelsTheGpuCannotRun$")
set(host_only_tests
    "^FixedPointsCudaDispatch\\.CountsCandidateRegions$"
    "^FixedPointsCudaDispatch\\.CudaRejectsRanksAboveFourAndTanh$")  # refused before any device
# Name and seconds.
set(slow_tests
    "CliTest.DemoStudentComesWithinTwoPercentOfTheTeacher" 85
    "CudaFilter.TenMillionParticlesInAll" 62
    "FixedPointsCuda.RepeatedRunsAreIdenticalAndAutoUsesTheGpuWhenLarge" 53
    "Training.EegRecordingElboRises" 48
    "FixedPointsCuda.MatchesCpuOnRandomNetworks" 31
    "CudaFilter.ReusedWorkspaceGivesWhatAFreshBackendGives" 10)

# A pattern or name that matches no test any more (renamed, removed) is reported, so the lists
# follow the tests.
set(unmatched ${gpu_tests} ${host_only_tests})
foreach(test IN LISTS lrsmc_discovered_tests)
  set(labels cpu)
  foreach(pattern IN LISTS gpu_tests)
    if(test MATCHES "${pattern}")
      set(labels gpu)
      list(REMOVE_ITEM unmatched "${pattern}")
    endif()
  endforeach()
  foreach(pattern IN LISTS host_only_tests)
    if(test MATCHES "${pattern}")
      set(labels cpu)
      list(REMOVE_ITEM unmatched "${pattern}")
    endif()
  endforeach()
  list(FIND slow_tests "${test}" slow)
  if(slow EQUAL -1)
    set_tests_properties("${test}" PROPERTIES LABELS "${labels}")
  else()
    math(EXPR cost_index "${slow} + 1")
    list(GET slow_tests ${cost_index} cost)
    set_tests_properties("${test}" PROPERTIES LABELS "${labels};slow" COST ${cost})
    list(APPEND matched_slow "${test}")
  endif()
endforeach()
foreach(test IN LISTS slow_tests)
  list(FIND matched_slow "${test}" found)
  if(found EQUAL -1 AND NOT test MATCHES "^[0-9]+$")
    list(APPEND unmatched "${test}")
  endif()
endforeach()
if(unmatched)
  message(WARNING "tests/test_labels.cmake: no test matches ${unmatched}; update its lists")
endif()
